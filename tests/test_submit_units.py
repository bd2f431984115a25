"""How the kubernetes.core path splits a batch into module invocations (no cluster needed)."""

from __future__ import annotations

import pytest

from kubesweep import submit_ansible


@pytest.mark.parametrize(("n", "k"), [(7, 3), (1000, 4), (5, 5), (3, 8), (0, 2)])
def test_chunks_keep_every_job_once_in_order_and_near_equal(n, k):
    items = list(range(n))
    parts = submit_ansible.chunks(items, k)
    assert [x for p in parts for x in p] == items
    assert all(parts)
    assert len(parts) == min(n, k)
    if parts:
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.mark.parametrize(("n", "cpus", "expected"), [
    (1, 2, 1),        # a refill of one trial: one module process
    (49, 2, 1),
    (120, 2, 3),      # no chunk under MIN_PER_CHUNK Jobs
    (1000, 2, 4),     # two per core
    (1000, 64, submit_ansible.MAX_CHUNKS),
])
def test_chunk_count_scales_with_the_batch_and_the_cores(n, cpus, expected):
    assert submit_ansible.chunk_count(n, cpus) == expected
