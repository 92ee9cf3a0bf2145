"""Hyperparameter sweeps: search spaces, the optuna study, one trial, and the sweep's results."""
