"""Wafer-map data: the canonical record, its Parquet storage, parsers, validation and splits."""
