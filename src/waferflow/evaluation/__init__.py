"""Evaluation: wafer-class and defect-mask metrics, and the plots a person looks at first."""
