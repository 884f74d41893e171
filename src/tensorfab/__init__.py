"""tensorfab: train, measure, optimize, serve and schedule deep-learning work."""

__version__ = "0.1.0"
