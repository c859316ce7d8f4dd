"""Shared by the tests/security attack tests: ``espfast up`` answering in b (bench.dos's
``responder``), espfast.tools.ikeload run from a, and the daemon's counters at its end."""

from __future__ import annotations

from bench.dos import MODP_PROPOSALS, SPOOF_NET, responder, rss_kib, tool
from espfast.static import Running
from tests.netns.updaemon import counters

__all__ = ["MODP_PROPOSALS", "SPOOF_NET", "end", "responder", "rss_kib", "tool"]


def end(b: Running) -> tuple[dict[str, int], str]:
    """Stop b (SIGTERM by PID): its counters and all it wrote on stderr. It must have
    been running until then and exit 0."""
    assert b.proc.poll() is None, "the daemon died under the attack"
    status, out, err = b.stop()
    assert status == 0, err
    assert "Traceback" not in err, err
    return counters(out), err
