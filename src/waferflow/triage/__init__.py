"""Open-set triage: a novelty score beside every prediction, and PASS / REVIEW / REJECT.

* :mod:`~waferflow.triage.novelty` — the density of known wafers in the classifier's own
  feature space, as an ``nn.Module`` the export puts in the ONNX graph;
* :mod:`~waferflow.triage.decide` — thresholds calibrated on the validation split (class-
  conditional conformal prediction sets, novelty p-values) and the decision with its reason.
"""
