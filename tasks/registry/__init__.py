"""The model registry: aliases and the champion look-up, the gate, registration, model references, reports."""
