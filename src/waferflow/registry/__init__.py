"""MLflow: tracking configuration, run provenance, the pyfunc model and registry aliases."""
