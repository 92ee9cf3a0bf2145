"""How flows run unattended: deployments with schedules, event triggers and concurrency limits, on a work pool."""
