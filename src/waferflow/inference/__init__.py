"""Serving: ONNX export with parity checks, the ONNX Runtime engine, and defect metrics."""
