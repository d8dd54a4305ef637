"""modelci: continuous integration and deployment for machine-learning models."""

__version__ = "0.1.0"
