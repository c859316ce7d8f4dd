"""espfast/metrics.py: the gauges that need no daemon (the others are scraped from a
running one in tests/netns/test_ops_ctl.py and tests/security/test_sec_metrics.py; the
RADIUS counters in tests/unit/test_radius_client.py)."""

from __future__ import annotations

from types import SimpleNamespace

from espfast.metrics import Metrics


def test_memory_gauges() -> None:
    """espfast_heap_bytes always (glibc mallinfo2, for memory benchmarks); Python's heap
    only when the daemon runs under tracemalloc."""
    import tracemalloc

    m = Metrics(SimpleNamespace(listeners=[], radius=None), lambda: None, 1)  # type: ignore[arg-type,return-value]
    names = {f.name: f for f in m._memory()}
    assert list(names) == ["espfast_heap_bytes"]
    assert names["espfast_heap_bytes"].samples[0].value > 0
    tracemalloc.start()
    try:
        names = {f.name: f for f in m._memory()}
    finally:
        tracemalloc.stop()
    assert names["espfast_python_traced_bytes"].samples[0].value > 0
