"""Units of work: plain typed functions, each with a thin `@task` wrapper for caching and retries.

Grouped by concern, imports running one way (a check in `make lint` enforces it):
the shared vocabulary here (datasets, contracts, metrics, atomic storage, links, events,
caching), then `data`, `model`, `registry`, and on top `sweep`, `scoring` and `monitoring`.
"""
