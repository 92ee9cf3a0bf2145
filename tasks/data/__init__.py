"""Data steps: ingest, contract inference, validation, split, and reading tabular input files."""
