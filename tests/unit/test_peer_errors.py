"""Whatever the peer's input makes the control plane raise becomes a counted protocol error:
the TaskManager answers a request that raised anything with N(INVALID_SYNTAX) (and fails
our exchange on a response that did), counts it, and the daemon's last-resort guard counts
and logs in one line what still escaped. Provoked here by making a step raise what no
check anticipated (the security tests do it with real malformed input)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from ikepair import Pair, configs, establish_pair, events
from test_daemon import conf, make_pair

from espfast.control.events import IkeSaDown
from espfast.control.tasks.child_create import ChildNegotiation
from espfast.control.tasks.ike_auth import IkeAuth
from espfast.daemon import GUARD_LINES, GUARD_WINDOW


def boom(*args: object, **kwargs: object) -> None:
    raise KeyError("nothing expected this")


def test_a_request_that_raises_is_answered_invalid_syntax(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    p = Pair(*configs())
    p.roundtrip()  # IKE_SA_INIT
    monkeypatch.setattr(ChildNegotiation, "choose", boom)  # the responder's IKE_AUTH step
    p.roundtrip()  # IKE_AUTH --> <-- N(INVALID_SYNTAX)
    assert p.r is not None and p.i is not None
    assert p.r.tm.counters.unexpected_errors == 1 and p.r.tm.counters.protocol_errors == 1
    down = [e for e in events(p.i) if isinstance(e, IkeSaDown)]
    assert [d.reason for d in down] == ["peer answered INVALID_SYNTAX"]
    gone = [e for e in events(p.r) if isinstance(e, IkeSaDown)]
    assert "cannot process the message (KeyError: 'nothing expected this')" in gone[0].reason


def test_an_established_sa_survives_a_request_that_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    p = establish_pair()
    assert p.r is not None and p.i is not None
    monkeypatch.setattr(ChildNegotiation, "choose", boom)
    p.i.create_child(p.i.config.children[0], p.now)  # CREATE_CHILD_SA -->
    p.roundtrip()
    assert p.r.tm.counters.unexpected_errors == 1
    assert p.r.is_established and p.i.is_established  # only the exchange failed


def test_a_response_that_raises_fails_our_exchange(monkeypatch: pytest.MonkeyPatch) -> None:
    p = Pair(*configs())
    p.roundtrip()
    p.i_to_r()  # IKE_AUTH -->, answered
    monkeypatch.setattr(IkeAuth, "_check_peer", boom)  # the initiator checks the responder
    p.r_to_i()
    assert p.i is not None
    assert p.i.tm.counters.unexpected_errors == 1 and p.i.tm.counters.protocol_errors == 1
    down = [e for e in events(p.i) if isinstance(e, IkeSaDown)]
    assert "cannot process the message (KeyError" in down[0].reason


def test_the_daemon_guard_counts_and_logs_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        _, b, _, _, _ = make_pair(tmp_path, asyncio.get_running_loop(), *conf())
        b.start()
        monkeypatch.setattr(type(b.mgr), "receive_datagram", boom)
        # A header that parses: IKE_SA_INIT request, no payloads.
        header = bytes(7) + b"\x01" + bytes(8) + bytes([0, 0x20, 34, 0x08]) + bytes(4)
        datagram = header + (28).to_bytes(4, "big")
        with caplog.at_level(logging.WARNING, "espfast.daemon"):
            for _ in range(GUARD_LINES + 5):  # a flood: the log says GUARD_LINES of them
                b.datagram_received(datagram, ("198.18.0.1", 500), 500)
            assert b.counters.input_errors == GUARD_LINES + 5
            assert len(caplog.records) == GUARD_LINES
            start, lines, quiet = b._guard_log
            b._guard_log = (start - GUARD_WINDOW, lines, quiet)  # the window is over
            b.datagram_received(datagram, ("198.18.0.1", 500), 500)
        b.mgr.shutdown(0.0)

    asyncio.run(scenario())
    messages = [r.getMessage() for r in caplog.records]
    assert set(messages[:GUARD_LINES]) == {
        "error handling an IKE datagram from 198.18.0.1: KeyError: 'nothing expected this'"
    }
    assert messages[GUARD_LINES:] == ["5 more such errors were not logged", messages[0]]
