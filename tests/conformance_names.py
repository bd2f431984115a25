"""The conformance tests the suite runs (their names as e2e.test reports them)."""

SUBSET = (
    "[sig-network] DNS should provide DNS for the cluster [Conformance]",
    "[sig-network] DNS should provide DNS for services [Conformance]",
    # a Service port that is removed stops answering (kube-proxy's nftables mode rejects it)
    "[sig-network] Services should serve endpoints on same port and different protocols [Conformance]",
    "[sig-apps] Job should run a job to completion when tasks sometimes fail and are locally restarted [Conformance]",
    "[sig-node] ConfigMap should be consumable via environment variable [NodeConformance] [Conformance]",
    "[sig-node] Secrets should be consumable from pods in env vars [NodeConformance] [Conformance]",
    # upstream busybox's ash: variables named like data-1 reach the command; its own error message
    "[sig-node] ConfigMap should be consumable as environment variable names with various prefixes [Conformance]",
    "[sig-node] Kubelet when scheduling a read only busybox container should not write to root filesystem "
    "[LinuxOnly] [NodeConformance] [Conformance]",
    # the local inventory's topology: two nodes without taints
    "[sig-architecture] Conformance Tests should have at least two untainted nodes [Conformance]",
    "[sig-scheduling] SchedulerPredicates [Serial] validates that NodeSelector is respected if matching [Conformance]",
)
