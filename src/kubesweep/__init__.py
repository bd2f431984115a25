"""kubesweep: hyperparameter sweeps as plain Kubernetes Jobs, from bare machines to the best trial."""

__version__ = "0.1.0"
