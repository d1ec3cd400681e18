"""Pattern features and the boosted trees beside the U-Net (issue #15's sim-to-real lever).

:mod:`~waferflow.patterns.features` describes a wafer by where and how its fails lie (densities,
Radon projections, cluster geometry, rim coverage); :mod:`~waferflow.patterns.trees` fits
scikit-learn's ``HistGradientBoostingClassifier`` on them, exports it to ONNX and blends its class
probabilities with the U-Net's (:class:`~waferflow.patterns.trees.PatternClassifier`).
:mod:`~waferflow.patterns.density` is a small CNN on a texture-free fail-density picture of each
wafer, the served class's third member since stop 46 (``patterns.density_cnn``).
"""
