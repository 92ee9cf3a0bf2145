"""Batch scoring: the plan, one mini-batch on a worker, and the published output with its manifest."""
