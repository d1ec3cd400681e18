"""waferflow: a workflow-orchestrated MLOps pipeline for wafer-map defect pattern recognition.

Example:
    >>> from waferflow.synth import WaferGenerator
    >>> record = WaferGenerator(seed=0).make("Edge-Ring")
    >>> record.label
    'Edge-Ring'
"""

__version__ = "0.1.0"
