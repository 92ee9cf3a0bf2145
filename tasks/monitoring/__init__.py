"""Monitoring: additive data profiles, drift statistics, the drift check, live performance, their reports."""
