"""Many road warriors at one ``espfast up`` gateway, from one process: for bench/rwload.py
and tests/netns/test_rwload.py.

Run it inside the clients' namespace::

    python -m espfast.tools.rwload CONFIG TARGET --sources 198.18.16.0/22 --inner 198.19.2.1

CONFIG is an ``espfast up`` road-warrior client config (its first connection: PSK,
certificates or EAP-MSCHAPv2, ``vips``, the child's ``remote_ts``); client ``i`` is that
connection with the identity ``--id-format`` (``rw{i}@rwload.test``; with EAP also its
user name, with the config's password) and speaks from the ``i``-th address of
``--sources`` (the addresses must be on an interface of the namespace; the gateway must
route them back). Every client is an IKE SA of the sans-I/O control plane: IKE_SA_INIT and
IKE_AUTH with a CFG_REQUEST for an address, COOKIEs answered, IKE and ESP on UDP 4500
(NAT-T forced, RFC 3948). Nothing goes into any kernel: ESP is sealed and opened here with
the Child SA's keys (AES-GCM or ChaCha20-Poly1305 from ``cryptography``, RFC 4106 /
RFC 7634), and two sockets (UDP 500 and 4500 on every address, the source chosen per
datagram with IP_PKTINFO) carry all clients.

It reads commands on stdin, one a line, and answers each with one JSON line on stdout
(meanwhile it keeps answering the gateway):

- ``up N [CONCURRENCY]``: bring up clients until N are up (at most CONCURRENCY handshakes
  in flight, default 64): how many came up and failed, the seconds it took, handshakes
  per second, the leases (distinct or not), the handshake latencies.
- ``ping CLIENTS COUNT [WINDOW]``: COUNT ICMP echo requests from the virtual IPs of the
  first CLIENTS clients (round robin) to ``--inner``, at most WINDOW (default 64) awaiting
  an answer; an answer counts when it opens with the client's inbound keys and is the echo
  reply from ``--inner`` to that client's address.
- ``flood CLIENTS COUNT``: COUNT echo requests as ``ping`` sends them, but all sealed
  first and then sent as fast as the socket takes them (the gateway sees full batches);
  the answers that came.
- ``spoof CLIENTS``: each of the first CLIENTS clients sends, inside its own SA, one echo
  request with the next client's virtual IP as source, and one to the next client's
  virtual IP: the gateway must drop both (traffic selectors, after decryption). Counts the
  answers that came back anyway (to anyone) within a second.
- ``probe CLIENTS SRC DST``: one echo request from each of the first CLIENTS clients, from
  SRC (``vip``: its own address) to DST, inside its SA: the answers that came in a second.
- ``quit``: delete every IKE SA (the gateway is told) and exit.

Bounded: at most ``--max-clients`` clients, every wait has a timeout, and datagrams go
only to TARGET.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import ipaddress
import json
import select
import selectors
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from espfast.config import load_up
from espfast.control.config import AuthConfig, IkeConfig
from espfast.control.constants import IdType
from espfast.control.events import ChildSaFailed, ChildSaUp, IkeSaDown, IkeSaUp
from espfast.control.ike_sa import IkeSa
from espfast.control.manager import IkeManager
from espfast.control.rng import SystemRng
from espfast.tools.ikeload import IKE_PORT, NATT_PORT, NON_ESP_MARKER, checksum

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux, <netinet/in.h>
AEADS: dict[str, type[AESGCM] | type[ChaCha20Poly1305]] = {
    "aes128gcm16": AESGCM, "aes256gcm16": AESGCM, "chacha20poly1305": ChaCha20Poly1305,
}  # fmt: skip
SALT = 4  # RFC 4106 §8.1, RFC 7634 §4: the last 4 bytes of the key material
ICMP_ECHO, ICMP_REPLY = 8, 0
IPPROTO_ICMP = 1
LINGER = 1.0  # seconds ``ping`` waits for answers after the last one came


class EspError(ValueError):
    """An ESP packet that does not open (wrong SPI, ICV, trailer)."""


@dataclass
class Esp:
    """One direction of a Child SA, as RFC 4303 / RFC 4106 frame it over UDP (RFC 3948)."""

    spi: int
    key: bytes = field(repr=False)
    transform: str
    esn: bool
    seq: int = 0

    def __post_init__(self) -> None:
        if self.transform not in AEADS:
            raise ValueError(f"rwload speaks only {', '.join(AEADS)}, not {self.transform}")
        self._aead = AEADS[self.transform](self.key[:-SALT])
        self._salt = self.key[-SALT:]

    def _aad(self, seq: int) -> bytes:
        # RFC 4303 §2.2.1 / RFC 4106 §5: with ESN the high half joins the AAD.
        spi = self.spi.to_bytes(4, "big")
        if self.esn:
            return spi + (seq >> 32).to_bytes(4, "big") + (seq & 0xFFFFFFFF).to_bytes(4, "big")
        return spi + seq.to_bytes(4, "big")

    def seal(self, inner: bytes, next_header: int = 4) -> bytes:
        self.seq += 1
        pad = -(len(inner) + 2) % 4  # RFC 4303 §2.4: the trailer ends on 4 bytes
        plain = inner + bytes(range(1, pad + 1)) + bytes((pad, next_header))
        iv = self.seq.to_bytes(8, "big")  # unique per packet under this key
        head = self.spi.to_bytes(4, "big") + (self.seq & 0xFFFFFFFF).to_bytes(4, "big")
        return head + iv + self._aead.encrypt(self._salt + iv, plain, self._aad(self.seq))

    def open(self, packet: bytes) -> bytes:
        if len(packet) < 8 + 8 + 16 + 2 or int.from_bytes(packet[:4], "big") != self.spi:
            raise EspError("not ours")
        seq = int.from_bytes(packet[4:8], "big")
        iv = packet[8:16]
        try:
            plain = self._aead.decrypt(self._salt + iv, packet[16:], self._aad(seq))
        except Exception as e:  # cryptography's InvalidTag
            raise EspError("ICV does not verify") from e
        pad = plain[-2]
        if pad + 2 > len(plain) or plain[-2 - pad : -2] != bytes(range(1, pad + 1)):
            raise EspError("bad padding")
        return plain[: -2 - pad]


def echo(src: str, dst: str, ident: int, seq: int, kind: int = ICMP_ECHO) -> bytes:
    """An IPv4 ICMP echo request (or reply) with 32 bytes of payload."""
    icmp = bytearray(struct.pack("!BBHHH", kind, 0, 0, ident, seq) + bytes(32))
    icmp[2:4] = checksum(bytes(icmp)).to_bytes(2, "big")
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), seq, 0, 64,
                               IPPROTO_ICMP, 0, socket.inet_aton(src),
                               socket.inet_aton(dst)))  # fmt: skip
    ip[10:12] = checksum(bytes(ip)).to_bytes(2, "big")
    return bytes(ip) + bytes(icmp)


def parse_reply(inner: bytes) -> tuple[str, str, int, int] | None:
    """(source, destination, identifier, sequence) of an IPv4 ICMP echo reply, else None."""
    if len(inner) < 28 or inner[0] >> 4 != 4 or inner[9] != IPPROTO_ICMP:
        return None
    hl = (inner[0] & 0xF) * 4
    if len(inner) < hl + 8 or inner[hl] != ICMP_REPLY:
        return None
    ident, seq = struct.unpack("!HH", inner[hl + 4 : hl + 8])
    return socket.inet_ntoa(inner[12:16]), socket.inet_ntoa(inner[16:20]), ident, seq


@dataclass
class Road:
    """One road warrior."""

    index: int
    source: str
    config: IkeConfig
    sa: IkeSa | None = None
    started: float = 0.0
    up_at: float | None = None
    failed: str | None = None
    vip: str | None = None
    out: Esp | None = None
    inb: Esp | None = None
    local_ts: tuple[str, ...] = ()  # the Child SA's selectors, as the gateway narrowed them
    remote_ts: tuple[str, ...] = ()


class Load:
    def __init__(self, config: IkeConfig, target: str, sources: list[str], inner: str,
                 id_format: str, timeout: float = 300.0) -> None:  # fmt: skip
        self.target = target
        self.timeout = timeout  # seconds a command may take at most
        self.inner = inner
        child = config.children[0]
        self.roads = [Road(i, src, dataclasses.replace(
            config, local_id=(IdType.RFC822_ADDR, id_format.format(i=i).encode()),
            auth=self._auth(config, id_format.format(i=i)),
            children=(child,))) for i, src in enumerate(sources)]  # fmt: skip
        self.mgr = IkeManager([], rng=SystemRng(), local=(sources[0], IKE_PORT))
        self.by_ike: dict[int, Road] = {}
        self.by_spi: dict[int, Road] = {}  # our inbound ESP SPI -> its road warrior
        self.in_flight: set[int] = set()  # road warriors whose handshake is under way
        self.socks: dict[int, socket.socket] = {}
        for port in (IKE_PORT, NATT_PORT):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for opt, forced in ((socket.SO_RCVBUF, 33), (socket.SO_SNDBUF, 32)):
                s.setsockopt(socket.SOL_SOCKET, opt, 1 << 23)
                with contextlib.suppress(OSError):  # SO_*BUFFORCE: past rmem_max, as root
                    s.setsockopt(socket.SOL_SOCKET, forced, 1 << 23)
            s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            s.bind(("0.0.0.0", port))  # noqa: S104 (every address of SOURCES; a test namespace)
            s.setblocking(False)
            self.socks[port] = s
        self.sel = selectors.DefaultSelector()
        for s in self.socks.values():
            self.sel.register(s, selectors.EVENT_READ)
        self.replies: list[tuple[Road, bytes]] = []  # opened ESP, until a phase reads it
        self.esp_bad = 0

    @staticmethod
    def _auth(config: IkeConfig, name: str) -> AuthConfig:
        """With EAP-MSCHAPv2 (``local_auth``), client ``name`` is also its EAP user name
        (the config's password for all of them)."""
        if not config.auth.eap_identity:
            return config.auth
        return dataclasses.replace(config.auth, eap_identity=name)

    def close(self) -> None:
        self.sel.close()
        for s in self.socks.values():
            s.close()

    # -- datagrams -----------------------------------------------------------------------
    def send(self, data: bytes, source: str, port: int) -> None:
        info = struct.pack("=I4s4s", 0, socket.inet_aton(source), bytes(4))  # in_pktinfo
        with contextlib.suppress(BlockingIOError):  # a full buffer: as if lost (IKE retransmits)
            self.socks[port].sendmsg([data], [(socket.IPPROTO_IP, IP_PKTINFO, info)], 0,
                                     (self.target, port))  # fmt: skip

    def pump(self) -> None:
        now = time.monotonic()
        t = self.mgr.get_timer()
        if t is not None and now >= t:
            self.mgr.handle_timer(now)
        while (event := self.mgr.next_event()) is not None:
            road = self.by_ike.get(event.ike_sa_id)
            if road is None:
                continue
            if isinstance(event, IkeSaUp):
                road.vip = next((v for v in event.virtual_ips if ":" not in v), None)
            elif isinstance(event, ChildSaUp) and road.out is None:
                road.out = Esp(event.spi_out, event.enc_key_out, event.transform, event.esn)
                road.inb = Esp(event.spi_in, event.enc_key_in, event.transform, event.esn)
                self.by_spi[event.spi_in] = road
                road.local_ts = tuple(map(str, event.local_ts))
                road.remote_ts = tuple(map(str, event.remote_ts))
                road.up_at = now
                self.in_flight.discard(road.index)
            elif isinstance(event, (IkeSaDown, ChildSaFailed)) and road.up_at is None:
                road.failed = getattr(event, "reason", type(event).__name__)
                self.in_flight.discard(road.index)
        for data, _, port in self.mgr.datagrams_to_send(now):
            road = self.by_ike.get(int.from_bytes(data[0:8], "big"))
            source = road.source if road is not None else self.roads[0].source
            self.send(NON_ESP_MARKER + data if port == NATT_PORT else data, source, port)

    def receive(self, port: int) -> None:
        sock = self.socks[port]
        for _ in range(512):
            try:
                data, anc, _, addr = sock.recvmsg(65535, socket.CMSG_SPACE(12))
            except BlockingIOError:
                return
            if port == NATT_PORT:
                if len(data) < 8:
                    continue  # a NAT keepalive
                if data[:4] != NON_ESP_MARKER:
                    self._esp(data)
                    continue
                data = data[4:]
            local = next(((socket.inet_ntoa(d[8:12]), port) for lvl, t, d in anc
                          if lvl == socket.IPPROTO_IP and t == IP_PKTINFO), None)  # fmt: skip
            self.mgr.receive_datagram(data, addr, time.monotonic(), local=local)

    def _esp(self, data: bytes) -> None:
        road = self.by_spi.get(int.from_bytes(data[:4], "big"))
        if road is None or road.inb is None:
            self.esp_bad += 1
            return
        try:
            self.replies.append((road, road.inb.open(data)))
        except EspError:
            self.esp_bad += 1

    def serve(self, until: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not until():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            t = self.mgr.get_timer()
            wait = min(left, 0.05, max(0.0, t - time.monotonic()) if t is not None else 1)
            for key, _ in self.sel.select(wait):
                if key.fileobj is sys.stdin:
                    return until()
                self.receive(self.socks_port(key.fileobj))
            self.pump()
        return True

    def socks_port(self, sock: object) -> int:
        return IKE_PORT if sock is self.socks[IKE_PORT] else NATT_PORT

    # -- commands ------------------------------------------------------------------------
    def up(self, count: int, concurrency: int, timeout: float) -> dict[str, object]:
        count = min(count, len(self.roads))
        pending = [r for r in self.roads[:count] if r.sa is None]
        t0 = time.monotonic()
        deadline = t0 + timeout

        def flight() -> int:
            return len(self.in_flight)

        while time.monotonic() < deadline:
            while pending and flight() < concurrency:
                road = pending.pop(0)
                road.started = time.monotonic()
                road.sa = self.mgr.initiate(road.config, local=(road.source, IKE_PORT),
                                            remote=(self.target, IKE_PORT),
                                            now=road.started)  # fmt: skip
                self.by_ike[road.sa.ike_sa_id] = road
                self.in_flight.add(road.index)
                self.pump()
            if not pending and flight() == 0:
                break
            self.serve(lambda: flight() < concurrency and bool(pending), 0.05)
        roads = self.roads[:count]
        up = [r for r in roads if r.up_at is not None]
        took = max((r.up_at for r in up if r.up_at is not None), default=t0) - t0
        leases = [r.vip for r in up]
        lat = [((r.up_at or 0) - r.started) * 1000 for r in up]
        failures = sorted({r.failed for r in roads if r.failed})
        return {"up": len(up), "failed": sum(1 for r in roads if r.failed),
                "unfinished": count - len(up) - sum(1 for r in roads if r.failed),
                "failures": failures[:5], "seconds": round(took, 3),
                "handshakes_per_s": round(len(up) / took, 1) if took > 0 else None,
                "leases": len([v for v in leases if v]),
                "distinct_leases": len(set(leases) - {None}),
                "latency_ms_median": round(statistics.median(lat), 1) if lat else None,
                "latency_ms_max": round(max(lat), 1) if lat else None,
                "remote_ts": sorted({" ".join(r.remote_ts) for r in up}),
                "narrowed_to_lease": sum(1 for r in up
                                         if r.local_ts == (f"{r.vip}/32",))}  # fmt: skip

    def flood(self, clients: int, count: int) -> dict[str, object]:
        """COUNT echo requests, sealed first, then sent as fast as the socket takes them
        (round robin over the first CLIENTS clients): the gateway sees full batches."""
        roads = self._ready(clients)
        if not roads:
            return {"error": "no client is up"}
        sealed = []
        for n in range(count):
            road = roads[n % len(roads)]
            assert road.out is not None and road.vip is not None
            packet = echo(road.vip, self.inner, road.index & 0xFFFF, (n // len(roads)) & 0xFFFF)
            sealed.append((road.out.seal(packet), road.source))
        self.replies.clear()
        t0 = time.monotonic()
        sock = self.socks[NATT_PORT]
        for data, source in sealed:
            info = struct.pack("=I4s4s", 0, socket.inet_aton(source), bytes(4))
            while True:
                try:
                    sock.sendmsg([data], [(socket.IPPROTO_IP, IP_PKTINFO, info)], 0,
                                   (self.target, NATT_PORT))  # fmt: skip
                    break
                except BlockingIOError:
                    select.select([], [sock], [], 0.1)  # the send buffer is full: wait
        sent_s = time.monotonic() - t0
        answered, last = 0, time.monotonic()
        while time.monotonic() - last < LINGER and time.monotonic() - t0 < self.timeout:
            self.serve(lambda: bool(self.replies), LINGER)
            for road, inner in self.replies:
                got = parse_reply(inner)
                answered += got is not None and got[:2] == (self.inner, road.vip)
                last = time.monotonic()
            self.replies.clear()
        return {"clients": len(roads), "sent": count, "answered": answered,
                "send_seconds": round(sent_s, 3), "esp_bad": self.esp_bad}  # fmt: skip

    def _ready(self, clients: int) -> list[Road]:
        return [r for r in self.roads[:clients] if r.out is not None and r.vip]

    def ping(self, clients: int, count: int, window: int, timeout: float) -> dict[str, object]:
        roads = self._ready(clients)
        if not roads:
            return {"error": "no client is up"}
        self.replies.clear()
        expected: dict[tuple[int, int], Road] = {}  # (ident, seq) -> sender
        ok = wrong = sent = 0
        answered: set[int] = set()
        t0 = progress = time.monotonic()
        deadline = t0 + timeout
        while (sent < count or expected) and time.monotonic() < deadline:
            while sent < count and len(expected) < window:
                road = roads[sent % len(roads)]
                ident, seq = road.index & 0xFFFF, (sent // len(roads)) & 0xFFFF
                assert road.out is not None and road.vip is not None
                self.send(road.out.seal(echo(road.vip, self.inner, ident, seq)), road.source,
                          NATT_PORT)  # fmt: skip
                expected[(ident, seq)] = road
                sent += 1
            self.serve(lambda: bool(self.replies), 0.2 if expected else 0)
            for road, inner in self.replies:
                got = parse_reply(inner)
                key = got[2:] if got is not None else None
                if (got is not None and key in expected and expected[key] is road
                        and got[:2] == (self.inner, road.vip)):  # fmt: skip
                    ok += 1
                    answered.add(road.index)
                    del expected[key]
                else:
                    wrong += 1
            if self.replies:
                progress = time.monotonic()
            self.replies.clear()
            if sent >= count and time.monotonic() - progress > LINGER:
                break  # the rest is lost
        took = time.monotonic() - t0
        return {"clients": len(roads), "sent": sent, "answered": ok, "wrong": wrong,
                "lost": len(expected), "clients_answered": len(answered),
                "seconds": round(took, 3), "esp_bad": self.esp_bad}  # fmt: skip

    def spoof(self, clients: int) -> dict[str, object]:
        roads = self._ready(clients)
        if len(roads) < 2:
            return {"error": "spoof needs two clients up"}
        self.replies.clear()
        sent = 0
        for k, road in enumerate(roads):
            other = roads[(k + 1) % len(roads)]
            assert road.out is not None and road.vip is not None and other.vip is not None
            for src, dst in ((other.vip, self.inner), (road.vip, other.vip)):
                self.send(road.out.seal(echo(src, dst, 0xFFFF, k & 0xFFFF)), road.source,
                          NATT_PORT)  # fmt: skip
                sent += 1
        self.serve(lambda: False, 1.0)
        leaked = len(self.replies)
        self.replies.clear()
        return {"clients": len(roads), "sent": sent, "answered": leaked}

    def probe(self, clients: int, src: str, dst: str) -> dict[str, object]:
        """One echo request from each of the first ``clients`` clients, from ``src``
        (``vip``: its own address) to ``dst``, inside its SA: the answers within LINGER."""
        roads = self._ready(clients)
        self.replies.clear()
        for k, road in enumerate(roads):
            assert road.out is not None and road.vip is not None
            packet = echo(road.vip if src == "vip" else src, dst, 0xFFFE, k & 0xFFFF)
            self.send(road.out.seal(packet), road.source, NATT_PORT)
        self.serve(lambda: False, LINGER)
        answered = [parse_reply(inner) for _, inner in self.replies]
        self.replies.clear()
        return {"clients": len(roads), "sent": len(roads), "answered": len(answered),
                "from": sorted({a[0] for a in answered if a is not None})}  # fmt: skip

    def quit(self) -> dict[str, object]:
        self.mgr.shutdown(time.monotonic())
        self.pump()
        self.serve(lambda: self.mgr.idle, self.timeout)
        return {"deleted": sum(1 for r in self.roads if r.sa is not None and r.sa.is_destroyed)}


def eap_credentials(directory: Path, gw_id: str, names: list[str],
                    password: str) -> tuple[str, str]:  # fmt: skip
    """For an EAP-MSCHAPv2 run in ``directory``: a CA and a certificate for the gateway
    (``espfast pki``), a user file with ``names``, all with ``password``, and a password
    file. Returns the gateway's and the client's credential lines for their configs."""
    from espfast.cli import main as cli
    from espfast.control.eap import nt_password_hash
    from espfast.static import write_private

    pki = directory / "pki"
    with contextlib.redirect_stdout(sys.stderr):  # (it names the files it wrote)
        if cli(["pki", "ca", "--out", str(pki), "--dn", "O=espfast, CN=rwload ca"]) or cli(
            ["pki", "issue", "--ca", str(pki), "--id", gw_id, "--name", "gw", "--out", str(pki)]
        ):
            raise RuntimeError("espfast pki failed")
    digest = nt_password_hash(password).hex()
    users = write_private(directory / "users", "".join(f"{n}:{digest}\n" for n in names))
    pw = write_private(directory / "rw.pw", password + "\n")
    gateway = (f'auth = "pubkey"\ncert = "{pki}/gw.crt"\nkey = "{pki}/gw.key"\n'
               f'remote_auth = "eap-mschapv2"\nusers = "{users}"')  # fmt: skip
    client = (f'local_auth = "eap-mschapv2"\neap_id = "rw"\npassword_file = "{pw}"\n'
              f'cacerts = ["{pki}/ca.crt"]')  # fmt: skip
    return gateway, client


def command(proc: subprocess.Popen[bytes], line: str) -> dict[str, Any]:
    """For the driving side: send ``line`` to a running rwload ``proc`` (stdin and stdout
    pipes) and return its answer; RuntimeError if it ended instead."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(line.encode() + b"\n")
    proc.stdin.flush()
    answer = proc.stdout.readline()
    if not answer:
        raise RuntimeError(f"rwload ended on {line!r} (exit {proc.wait(5)})")
    result: dict[str, Any] = json.loads(answer)
    return result


def run(load: Load, timeout: float) -> None:
    """The command loop on stdin (see the module docstring)."""
    while True:
        load.sel.register(sys.stdin, selectors.EVENT_READ)
        load.serve(lambda: False, 3600.0)  # until stdin has a line (or an hour passes)
        load.sel.unregister(sys.stdin)
        line = sys.stdin.readline()
        words = line.split()
        if not line or (words and words[0] == "quit"):
            print(json.dumps(load.quit()), flush=True)
            return
        if not words:
            continue
        cmd = words[0]
        args = [int(w) for w in words[1:] if w.isdigit()]
        result: dict[str, object]
        if cmd == "up":
            result = load.up(args[0], args[1] if len(args) > 1 else 64, timeout)
        elif cmd == "ping":
            result = load.ping(args[0], args[1], args[2] if len(args) > 2 else 64, timeout)
        elif cmd == "flood":
            result = load.flood(args[0], args[1])
        elif cmd == "spoof":
            result = load.spoof(args[0])
        elif cmd == "probe" and len(words) == 4:
            result = load.probe(int(words[1]), words[2], words[3])
        else:
            result = {"error": f"unknown command {cmd!r}"}
        print(json.dumps({"cmd": cmd} | result), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m espfast.tools.rwload", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("config", help="an espfast up road-warrior client config")
    p.add_argument("target", help="the gateway's address")
    p.add_argument("--sources", required=True, help="the clients' addresses (a prefix)")
    p.add_argument("--inner", required=True, help="the gateway's inner address to ping")
    p.add_argument("--id-format", default="rw{i}@rwload.test")
    p.add_argument("--max-clients", type=int, default=1000)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per command")
    a = p.parse_args(argv)
    net = ipaddress.ip_network(a.sources)
    sources = [str(h) for h, _ in zip(net.hosts(), range(a.max_clients), strict=False)]
    config = load_up(a.config).connections[0].ike
    load = Load(config, a.target, sources, a.inner, a.id_format, a.timeout)
    try:
        run(load, a.timeout)
    finally:
        load.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
