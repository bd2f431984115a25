"""This machine: the local cluster from our playbooks (node containers, services, kwok fake nodes),
trainer images built with Docker, host prerequisites and the conformance run."""
