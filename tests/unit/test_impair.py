"""The impairment relay's pipeline (espfast.impair.Lane) with a hand-driven clock, the
packet classifier, and config validation. The netns tests run the real process."""

from __future__ import annotations

import random
import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from espfast.impair import (
    NOT_IP,
    Impairment,
    Lane,
    classify,
    lanes_from_config,
    main,
    matches,
    parse_config,
    parse_match,
)

A, B = "198.18.0.1", "198.18.1.1"


def ipv4(proto: int, payload: bytes, *, frag: int = 0, ihl: int = 5) -> bytes:
    options = b"\x01" * (ihl * 4 - 20)
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(payload), 1, frag, 64, proto, 0,
        socket.inet_aton(A), socket.inet_aton(B),
    )  # fmt: skip
    return header + options + payload


def udp4(sport: int, dport: int, payload: bytes, **kw: int) -> bytes:
    return ipv4(17, struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload, **kw)


def udp6(sport: int, dport: int, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    header = struct.pack("!IHBB", 6 << 28, len(udp), 17, 64)
    return header + socket.inet_pton(socket.AF_INET6, "2001:2::1") * 2 + udp


def seq(i: int) -> bytes:
    return udp4(40000, 5001, b"%08d" % i)


def number(pkt: bytes) -> int:
    return int(pkt[28:36])


def lane(rng_seed: int = 0, **kw: object) -> Lane:
    return Lane(Impairment(**kw), random.Random(rng_seed))  # type: ignore[arg-type]


def drain(ln: Lane) -> list[bytes]:
    """Everything still held, released at the times the lane asks for (bounded)."""
    out: list[bytes] = []
    for _ in range(10_000):
        t = ln.next_deadline()
        if t is None:
            break
        out += ln.due(t)
    return out


def run(ln: Lane, n: int, step: float = 0.001) -> list[int]:
    """Push n sequence-numbered packets, one every ``step``; collect everything due."""
    out: list[int] = []
    t = 0.0
    for i in range(n):
        ln.push(seq(i), t)
        out += [number(p) for p in ln.due(t)]
        t += step
    out += [number(p) for p in drain(ln)]
    assert ln.held() == 0 and ln.next_deadline() is None
    return out


# --- classification -------------------------------------------------------------------

IKE = b"\x11" * 8 + b"\0" * 8  # an IKE header starts with the initiator SPI
MARKER = b"\0\0\0\0"


@pytest.mark.parametrize(
    ("pkt", "expected"),
    [
        (udp4(500, 500, IKE), {"all", "udp", "ike"}),
        (udp4(4500, 4500, MARKER + IKE), {"all", "udp", "ike"}),
        (udp4(4500, 4500, b"\x00\x00\x10\x01" + b"esp" * 10), {"all", "udp", "esp"}),
        (udp4(4500, 4500, b"\xff"), {"all", "udp"}),  # NAT keepalive: neither
        (udp4(4500, 4500, b"\0\0\0"), {"all", "udp"}),  # too short for either
        (udp4(12345, 4500, b"\x00\x00\x10\x01"), {"all", "udp", "esp"}),  # a NAT's port
        (udp6(4500, 4500, b"\x00\x00\x10\x01"), {"all", "udp", "esp"}),
        (udp6(500, 500, IKE), {"all", "udp", "ike"}),
        (ipv4(50, b"\x00\x00\x10\x01"), {"all", "esp"}),
        (ipv4(1, b"\x08\x00" + b"\0" * 6), {"all"}),
        (udp4(500, 500, IKE, frag=0x2000), {"all", "udp", "ike"}),  # first fragment
        (udp4(500, 500, IKE, frag=0x0003), {"all"}),  # a later fragment has no ports
        (udp4(500, 500, IKE, ihl=6), {"all", "udp", "ike"}),  # with IP options
        (ipv4(17, b"\x01\xf4"), {"all"}),  # UDP header cut short
        (b"\x45" + b"\0" * 10, {"all"}),  # shorter than an IPv4 header
        (b"\x60" + b"\0" * 30, {"all"}),  # shorter than an IPv6 header
        (b"\x4f" + b"\0" * 20, {"all"}),  # IHL beyond the packet
        (b"\x42" + b"\0" * 40, {"all"}),  # IHL below 5
        (b"\x00" * 64, {"all"}),  # neither version
        (b"", {"all"}),
    ],
)
def test_classify_and_match(pkt: bytes, expected: set[str]) -> None:
    info = classify(pkt)
    got = {m for m in ("all", "udp", "ike", "esp") if matches(parse_match(m), info)}
    assert got == expected


def test_port_match_either_direction() -> None:
    sel = parse_match("port:5001")
    assert matches(sel, classify(udp4(5001, 9, b"")))
    assert matches(sel, classify(udp4(9, 5001, b"")))
    assert not matches(sel, classify(udp4(9, 5002, b"")))
    assert matches(parse_match("ike, port:9"), classify(udp4(9, 1, b"")))


def test_link_scope_packets_are_not_relayed() -> None:
    ln = lane()
    six = udp6(1, 2, b"x")
    mld = six[:8] + bytes(16) + socket.inet_pton(socket.AF_INET6, "ff02::16") + six[40:]
    ll_src = six[:8] + socket.inet_pton(socket.AF_INET6, "fe80::1") + six[24:]
    igmp = ipv4(2, b"\0" * 8)[:16] + socket.inet_aton("224.0.0.22") + b"\0" * 8
    for pkt in (mld, ll_src, igmp):
        ln.push(pkt, 0.0)
    ln.push(six, 0.0)  # 2001:2::1 -> 2001:2::1: transit
    ln.push(ipv4(2, b"\0" * 8)[:16] + socket.inet_aton("239.1.1.1") + b"\0" * 8, 0.0)
    assert len(ln.due(0.0)) == 2
    assert ln.counters.link_scope == 3 and ln.counters.seen == 2


def test_not_ip_is_counted_and_still_forwarded() -> None:
    ln = lane(drop=1.0, match="udp")
    assert classify(b"junk") is NOT_IP
    ln.push(b"junk", 0.0)
    assert ln.due(0.0) == [b"junk"]
    assert ln.counters.not_ip == 1 and ln.counters.matched == 0


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.binary(max_size=80), max_size=30),
    st.sampled_from(["all", "udp", "ike", "esp", "port:4500", "ike,esp"]),
)
def test_any_bytes_never_break_the_lane(packets: list[bytes], match: str) -> None:
    ln = lane(drop=0.3, duplicate=0.3, reorder=0.3, delay=0.01, jitter=0.01, match=match)
    out = []
    for i, p in enumerate(packets):
        ln.push(p, i * 0.001)
        out += ln.due(i * 0.001)
    out += drain(ln)
    c = ln.counters
    assert c.seen == len(packets)
    assert len(out) == c.seen - c.dropped + c.duplicated - c.overflow
    assert ln.held() == 0


# --- impairments ----------------------------------------------------------------------


def test_no_impairment_is_in_order_and_immediate() -> None:
    ln = lane()
    ln.push(seq(0), 5.0)
    assert [number(p) for p in ln.due(5.0)] == [0]
    assert run(ln, 100) == list(range(100))
    assert ln.counters.delayed == ln.counters.reordered == 0


def test_drop_rate_and_seed() -> None:
    got = run(lane(7, drop=0.3), 10_000)
    assert 2700 < 10_000 - len(got) < 3300
    assert got == sorted(got)
    assert run(lane(7, drop=0.3), 10_000) == got  # same seed, same losses
    assert run(lane(8, drop=0.3), 10_000) != got


def test_duplicate_follows_original() -> None:
    ln = lane(duplicate=1.0)
    assert run(ln, 5) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert ln.counters.duplicated == 5 and ln.counters.seen == 5


def test_reorder_after_gap_later_packets() -> None:
    ln = lane(reorder=1.0, reorder_gap=2)
    ln.set_impairment(Impairment(reorder=1.0, reorder_gap=2))
    ln.push(seq(0), 0.0)  # held
    ln.set_impairment(Impairment())
    out = []
    for i in (1, 2, 3):
        ln.push(seq(i), 0.0)
        out += [number(p) for p in ln.due(0.0)]
    assert out == [1, 2, 0, 3]
    assert ln.counters.reordered == 1


def test_reorder_timeout_releases_without_counting() -> None:
    ln = lane(reorder=1.0, reorder_timeout=0.2)
    ln.push(seq(0), 0.0)
    assert ln.due(0.1) == []
    assert ln.next_deadline() == pytest.approx(0.2)
    assert [number(p) for p in ln.due(0.2)] == [0]
    assert ln.counters.reordered == 0  # nothing overtook it: merely late


def test_two_held_copies_are_released_one_by_one() -> None:
    ln = lane(duplicate=1.0, reorder=1.0, reorder_gap=1)
    ln.push(seq(0), 0.0)  # both copies held
    assert ln.held() == 2
    ln.set_impairment(Impairment())
    ln.push(seq(1), 0.0)  # releases both: each one overtaken by 1
    assert sorted(number(p) for p in ln.due(0.0)) == [0, 0, 1]


def test_delay_and_jitter() -> None:
    ln = lane(delay=0.05)
    ln.push(seq(0), 1.0)
    assert ln.due(1.049) == []
    assert ln.next_deadline() == pytest.approx(1.05)
    assert [number(p) for p in ln.due(1.05)] == [0]
    ln = lane(3, delay=0.05, jitter=0.05)
    got = run(ln, 500, step=0.001)
    assert sorted(got) == list(range(500)) and got != sorted(got)  # jitter reorders
    assert 0 < ln.counters.delayed <= 500


def test_unmatched_packets_bypass_everything() -> None:
    ln = lane(drop=1.0, delay=1.0, match="esp")
    ln.push(udp4(500, 500, IKE), 0.0)
    assert len(ln.due(0.0)) == 1
    assert ln.counters.matched == ln.counters.dropped == 0


def test_queue_limit_bounds_what_is_held() -> None:
    ln = Lane(Impairment(delay=1.0), random.Random(0), queue_limit=10)
    for i in range(25):
        ln.push(seq(i), 0.0)
    assert ln.held() == 10
    assert ln.counters.overflow == 15
    assert [number(p) for p in ln.due(1.0)] == list(range(10))


# --- config ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings_", "message"),
    [
        ({"drop": 1.5}, "drop must be a probability"),
        ({"duplicate": -0.1}, "duplicate must be a probability"),
        ({"reorder": "0.1"}, "reorder must be a probability"),
        ({"drop": True}, "drop must be a probability"),
        ({"delay": 100}, "delay must be a number of seconds"),
        ({"jitter": -1}, "jitter must be a number of seconds"),
        ({"reorder_gap": 0}, "reorder_gap must be an integer"),
        ({"reorder_gap": 2.5}, "reorder_gap must be an integer"),
        ({"match": "tcp"}, "unknown match 'tcp'"),
        ({"match": "port:0"}, "unknown match 'port:0'"),
        ({"match": "port:x"}, "unknown match 'port:x'"),
        ({"match": ""}, "match must be a non-empty string"),
        ({"loss": 0.1}, "unknown impairment setting"),
    ],
)
def test_bad_impairments(settings_: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Impairment.from_dict(settings_)


def test_config_round_trip_and_errors() -> None:
    imp = Impairment(drop=0.1, match="ike,port:9")
    assert Impairment.from_dict(imp.to_dict()) == imp
    assert parse_config({"ab": imp.to_dict()}) == {"ab": imp, "ba": Impairment()}
    with pytest.raises(ValueError, match="unknown direction"):
        parse_config({"ac": {}})
    with pytest.raises(ValueError, match="must be a JSON object"):
        parse_config([])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be a JSON object"):
        parse_config({"ab": 3})
    lanes = lanes_from_config({}, seed=1, queue_limit=5)
    assert set(lanes) == {"ab", "ba"} and lanes["ab"].queue_limit == 5
    # The two directions draw from different streams.
    assert lanes["ab"].rng.random() != lanes["ba"].rng.random()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ab", "{"], "espfast.impair: Expecting property name"),
        (["--ba", '{"drop": 2}'], "espfast.impair: drop must be a probability"),
        (["--ab", '{"match": "icmp"}'], "espfast.impair: unknown match 'icmp'"),
        (["--queue-limit", "0"], "espfast.impair: --queue-limit must be in"),
        (["--max-seconds", "-1"], "espfast.impair: --queue-limit must be in [1, 1e6], --max"),
        (["--config", "/nonexistent/impair.json"], "espfast.impair: [Errno 2]"),
    ],
)
def test_command_line_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
