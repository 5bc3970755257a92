"""gate: a deployment-readiness gate for ML models."""

__version__ = "0.1.0"
