"""Manual keys across restarts (security issue item 12): the real ``espfast static`` in two
namespaces, ESP captured on the wire, both ends restarted cleanly (SIGTERM) and crashed
(SIGKILL). No (SPI, IV) pair may repeat on the wire (the AEAD nonce is salt || IV, the
IV is the sequence number), and ESP captured before a restart, sent again to the
restarted receiver, is dropped as a replay. Without its state file it refuses to start.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from espfast.netns import Namespace, TwoHosts, wait_for
from espfast.seqstate import RESERVE, default_path
from espfast.static import Running, pair_configs, start_in, write_private

A_OUT, B_OUT = "198.18.0.1", "198.18.0.2"
B_IN = "198.19.2.1"


def ping(ns: Namespace, count: int = 3) -> bool:
    """Bounded: retried while the peer's end comes back (a restart is not instant)."""
    return wait_for(
        lambda: (
            (
                ns.run(
                    "ping", "-c", str(count), "-i", "0.2", "-W", "2", B_IN, check=False, timeout=30
                )
            ).returncode
            == 0
        ),
        timeout=20,
        interval=0.2,
    )


def esp_from(pcap: Path, src: str) -> list[bytes]:
    """The UDP payloads (ESP, RFC 3948) sent from ``src`` to port 4500, in order."""
    from scapy.layers.inet import IP, UDP
    from scapy.utils import rdpcap

    out = []
    for pkt in rdpcap(str(pcap)):
        if IP in pkt and UDP in pkt and pkt[IP].src == src and pkt[UDP].dport == 4500:
            payload = bytes(pkt[UDP].payload)
            if len(payload) > 16 and payload[:4] != b"\0\0\0\0":
                out.append(payload)
    return out


def resumed(esp: list[bytes]) -> bool:
    """Some packet numbered above the first reservation: sent after a crash."""
    return any(int.from_bytes(p[4:8], "big") > RESERVE for p in esp)


def floor_on_disk(state: Path) -> int:
    sas = json.loads(state.read_text())["sas"].values()
    (floor,) = [e["seq"] for e in sas if e["direction"] == "in"]
    assert isinstance(floor, int)
    return floor


def kill(run: Running) -> None:
    """A crash: SIGKILL by PID (nothing written at exit)."""
    run.proc.send_signal(signal.SIGKILL)
    run.proc.wait(timeout=10)


def stop_report(run: Running) -> dict[str, Any]:
    status, out, err = run.stop()
    assert status == 0, err
    report: dict[str, Any] = json.loads(out)
    return report


def test_restarts_repeat_no_nonce_and_accept_no_old_packet(tmp_path: Path) -> None:
    # One worker: b handles datagrams in arrival order (the last ping proves the
    # replayed packets before it were processed).
    text_a, text_b = pair_configs("aes128gcm16", workers=1)
    conf_a = write_private(tmp_path / "a.toml", text_a)
    conf_b = write_private(tmp_path / "b.toml", text_b)
    pcap = tmp_path / "veth.pcap"
    with TwoHosts.create("sr") as hosts:
        a = start_in(hosts.a, conf_a)
        b = start_in(hosts.b, conf_b, "--json")
        dump = hosts.b.popen(
            "tcpdump", "-i", "veth-b", "-n", "-U", "--immediate-mode", "-s", "0", "-w", str(pcap),
            "udp port 4500",
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            assert wait_for(lambda: pcap.exists() and pcap.stat().st_size > 0, timeout=10)
            assert ping(hosts.a)

            # Clean restarts of both ends, without --fresh-keys: they resume from the
            # state files.
            a.stop()
            b.stop()
            a = start_in(hosts.a, conf_a, fresh_keys=False)
            b = start_in(hosts.b, conf_b, "--json", fresh_keys=False)
            assert ping(hosts.a)

            # Wait until b's checkpoint covers a's first six packets, then crash both.
            assert wait_for(lambda: floor_on_disk(default_path(conf_b)) >= 6, timeout=10)
            kill(a)
            kill(b)
            # Without its state file (moved away: a restored backup, a new machine) the
            # same keys are refused, not started at sequence number 1.
            refused = hosts.a.run(
                sys.executable, "-m", "espfast", "static", "-c", str(conf_a),
                "--state", str(tmp_path / "elsewhere.state"), check=False, timeout=60,
            )  # fmt: skip
            assert refused.returncode == 1
            assert "no state file" in refused.stderr and "--fresh-keys" in refused.stderr
            a = start_in(hosts.a, conf_a, fresh_keys=False)
            b = start_in(hosts.b, conf_b, "--json", fresh_keys=False)
            assert ping(hosts.a)
            # until tcpdump has written what both ends sent after their crash
            assert wait_for(
                lambda: all(resumed(esp_from(pcap, src)) for src in (A_OUT, B_OUT)), timeout=10
            )
        finally:
            hosts.b.stop(dump)

        # Replay to the restarted (crashed) receiver what a sent before both restarts
        # and b's last checkpoint covered (a's numbers 1-6; after its crash a resumed
        # above 2^20).
        old = [p for p in esp_from(pcap, A_OUT) if int.from_bytes(p[4:8], "big") <= 6]
        assert len(old) == 6
        replay = hosts.a.popen(
            sys.executable, "-c",
            "import socket, sys\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "for h in sys.argv[1:]:\n"
            f"    s.sendto(bytes.fromhex(h), ({B_OUT!r}, 4500))\n",
            *[p.hex() for p in old],
        )  # fmt: skip
        assert replay.wait(timeout=30) == 0
        assert ping(hosts.a, 1)  # after the replays, through the same queue
        a.stop()
        report_b = stop_report(b)

    (in_b,) = [sa for sa in report_b["sas"] if sa["direction"] == "in"]
    assert in_b["replay_drops"] == len(old), in_b
    assert in_b["auth_failures"] == 0

    for src in (A_OUT, B_OUT):
        esp = esp_from(pcap, src)
        seqs = [int.from_bytes(p[4:8], "big") for p in esp]
        assert len(esp) >= 7, (src, seqs)  # three rounds of pings, each of at least one
        # RFC 4106 §3.1: IV = the 64-bit sequence number; (SPI, IV) must never repeat.
        ivs = Counter((p[:4], p[8:16]) for p in esp)
        assert max(ivs.values()) == 1, [k for k, n in ivs.items() if n > 1][:3]
        # after the crash each sender resumed above its whole first reservation
        assert resumed(esp)
