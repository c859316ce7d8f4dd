"""bench/compare.py's pure parts: classifying captured datagrams, counting handshake
round trips, the table and the roam row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.compare import (
    ROAM_ROW,
    Handshake,
    Idle,
    Packet,
    Result,
    classify,
    handshake_figures,
    markdown,
    roam_cells,
    round_trips,
    rows,
)

A, B = "198.18.0.1", "198.18.0.2"


def ike(src: str, t: float, exchange: int, response: bool, port: int = 500) -> Packet:
    header = bytes(16) + bytes([0x29, 0x20, exchange, 0x20 if response else 0x08]) + bytes(8)
    payload = (bytes(4) if port == 4500 else b"") + header
    return Packet(t, src, port, port, payload)


def esp(src: str, t: float) -> Packet:
    return Packet(t, src, 4500, 4500, b"\x00\x00\x10\x01" + bytes(40))


def test_ikev2_two_round_trips_then_esp() -> None:
    packets = [
        ike(A, 1.00, 34, False),
        ike(B, 1.01, 34, True),
        ike(A, 1.02, 35, False, 4500),
        ike(B, 1.03, 35, True, 4500),
        esp(A, 1.05),
        ike(A, 9.0, 37, False, 4500),  # an INFORMATIONAL (DPD) is not the handshake
    ]
    hs = handshake_figures("ikev2", packets, started=0.95)
    assert hs.round_trips == 2
    assert hs.packets == 4
    assert hs.first_packet_ms == pytest.approx(100.0)
    assert hs.handshake_ms == pytest.approx(50.0)
    assert classify("ikev2", packets[-1]) is None


def test_retransmitted_request_is_one_round_trip() -> None:
    packets = [ike(A, 1.0, 34, False), ike(A, 2.0, 34, False), ike(B, 2.01, 34, True)]
    assert round_trips(packets) == 1


def test_unanswered_request_is_no_round_trip() -> None:
    assert round_trips([ike(A, 1.0, 34, False)]) == 0
    assert round_trips([]) == 0


def test_wireguard_one_round_trip() -> None:
    packets = [
        Packet(1.0, A, 51820, 51820, b"\x01" + bytes(147)),
        Packet(1.01, B, 51820, 51820, b"\x02" + bytes(91)),
        Packet(1.02, A, 51820, 51820, b"\x04" + bytes(60)),
    ]
    hs = handshake_figures("wireguard", packets, started=1.0)
    assert (hs.round_trips, hs.packets) == (1, 2)
    assert hs.first_packet_ms == pytest.approx(20.0)


def test_openvpn_opcodes() -> None:
    # P_CONTROL_HARD_RESET_CLIENT_V2, then P_DATA_V2
    reset = Packet(1.0, A, 1194, 1194, bytes([7 << 3]) + bytes(13))
    data = Packet(2.0, A, 1194, 1194, bytes([9 << 3]) + bytes(30))
    assert classify("openvpn", reset) == "handshake"
    assert classify("openvpn", data) == "data"


def test_no_data_packet_leaves_first_packet_unknown() -> None:
    hs = handshake_figures("ikev2", [ike(A, 1.0, 34, False)], started=0.5)
    assert hs.first_packet_ms is None
    assert hs.round_trips == 0


def test_unknown_protocol_is_an_error() -> None:
    with pytest.raises(ValueError):
        classify("pptp", esp(A, 0.0))


def results() -> list[Result]:
    return [
        Result(
            "espfast-up-aes128gcm16",
            "ikev2",
            "espfast 0.1",
            [1.0, 2.0, 3.0],
            Handshake(2, 4, 120.0, 30.0),
            Idle(60.0, 0.03, 120),
        ),
        Result("openvpn", "openvpn", error="TunnelError: no ping"),
    ]


def test_table_rows_and_versions() -> None:
    table = dict(rows(results()))
    assert table["TCP 1-stream, Gbit/s (median, min..max)"] == ["2.00 (1.00..3.00)", "failed"]
    assert table["handshake round trips"] == ["2", "failed"]
    assert table["idle CPU, ms per minute"] == ["30.0", "failed"]
    assert table["idle wake-ups per minute"] == ["120", "failed"]
    assert table[ROAM_ROW] == ["pending: no roam result yet"] * 2
    meta = {"date": "d", "cpus": 2, "load_before": 3.0, "load": 4.0, "command": "x"}
    text = markdown(results(), meta)
    assert "- espfast-up-aes128gcm16: espfast 0.1" in text
    assert "openvpn: FAILED: TunnelError: no ping" in text


def test_roam_row_filled_from_newest_result(tmp_path: Path) -> None:
    rs = results()
    roam_cells(tmp_path, rs)
    assert rs[0].roam is None
    (tmp_path / "roam-20260101T000000Z.json").write_text("{}")
    switches = [{"gap_s": 0.004, "lost": 0}, {"gap_s": 0.812, "lost": 9},
                {"gap_s": 0.9, "lost": 9}]  # fmt: skip
    (tmp_path / "roam-20260102T000000Z.json").write_text(
        json.dumps({"results": [{"tunnel": "espfast", "up": switches[:1], "down": switches}]})
    )
    roam_cells(tmp_path, rs)
    assert rs[0].roam == "812 ms (roam-20260102T000000Z.json)"
    assert rs[1].roam == "not in roam-20260102T000000Z.json"


def test_only_refuses_an_unknown_protocol(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.compare import main

    with pytest.raises(SystemExit) as e:
        main(["--only", "ikev2,ipsec-kernel"])
    assert e.value.code == 2
    assert "unknown ipsec-kernel" in capsys.readouterr().err
