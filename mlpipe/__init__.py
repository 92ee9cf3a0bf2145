"""mlpipe: open, self-hosted ML pipelines on Prefect, Dask and MLflow."""

__version__ = "0.1.0"
