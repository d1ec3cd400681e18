"""Production monitoring: wafer-level features shared by training and serving, drift checks."""
