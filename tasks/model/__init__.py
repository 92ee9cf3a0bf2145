"""Models: families and their defaults, the preprocessing inside every model, the served pyfunc, train, evaluate."""
