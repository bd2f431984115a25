"""The Kubernetes API: clients and raw requests, the Job schema and the API server's own rules,
quantities, and the Kubernetes version kubesweep targets."""
