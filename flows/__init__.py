"""Prefect flows: one pipeline per module."""
