"""Units of work: plain typed functions, each with a thin `@task` wrapper for caching and retries."""
