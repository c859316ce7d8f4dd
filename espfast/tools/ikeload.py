"""IKE load and attack traffic at a running ``espfast up``, for tests/security and bench/.

Run it inside the sending namespace, ``python -m espfast.tools.ikeload MODE ...``; it
prints one JSON object on stdout. Every mode is bounded in count and in time, and sends
only to the TARGET named on its command line (tests use addresses in 198.18.0.0/15).

- ``handshakes CONFIG TARGET``: legitimate IKE_SA_INIT + IKE_AUTH handshakes, one after
  the other, as the first connection of the ``espfast up`` config CONFIG (from UDP 500 of
  ``--source``); each IKE SA is deleted once up. Prints the latencies (ms) and failures.
- ``spoof TARGET``: IKE_SA_INIT requests offering a MODP group at ``--rate`` a second for
  ``--seconds``, each from a random source address of ``--spoof-net`` (a raw socket), with
  the KE value 1 (``--ke one``, never valid) or random bytes (``--ke random``).
- ``hold CONFIG TARGET``: ``--count`` IKE_SA_INIT requests from one address, answering
  COOKIEs, and never an IKE_AUTH: each answered one is a half-open IKE SA held for 30 s.
- ``fragments CONFIG TARGET``: ``--sas`` half-open IKE SAs (as ``hold``), then on each,
  for ``--messages`` Message IDs, every RFC 7383 fragment but the last of a message of
  ``--size``-byte fragments: reassembly buffers that never complete.
- ``caps CONFIG TARGET``: ``--count`` IKE SAs at once as the config's identity, kept up,
  then ``--children`` more Child SAs on the first one: what came up and what was refused.
- ``fuzz CONFIG TARGET``: ``--count`` mutated IKE datagrams (bit flips, cuts, length and
  type rewrites, splices) of an IKE_SA_INIT request and of encrypted requests of a
  half-open IKE SA, to UDP 500 and to UDP 4500 (with the non-ESP marker).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import ipaddress
import json
import os
import random
import selectors
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterator

from espfast.config import load_up
from espfast.control.config import IkeConfig
from espfast.control.constants import ExchangeType, NotifyType
from espfast.control.events import ChildSaFailed, ChildSaUp, Event, IkeSaDown, IkeSaUp
from espfast.control.ike_sa import IkeSa
from espfast.control.message import Message, encode, encode_fragments
from espfast.control.payloads import KePayload, NoncePayload, NotifyPayload, SaPayload
from espfast.control.proposals import parse_ike
from espfast.control.rng import SystemRng

IKE_PORT, NATT_PORT = 500, 4500
NON_ESP_MARKER = bytes(4)
MODP_LEN = {14: 256, 15: 384, 16: 512}  # KE data bytes of RFC 3526 groups
PRIVATE_STATUS = 40969  # a private-use status notify (RFC 7296 §3.10.1): ignored


def ike_config(path: str) -> IkeConfig:
    return load_up(path).connections[0].ike


class Client:
    """IKE SAs this process initiates from UDP 500 of one address, over one socket."""

    def __init__(self, source: str, target: str, *, init_only: bool = False) -> None:
        self.source, self.target = source, (target, IKE_PORT)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.sock.bind((source, IKE_PORT))
        self.sock.setblocking(False)
        self.sas: dict[int, IkeSa] = {}
        self.init_only = init_only  # never send anything but IKE_SA_INIT
        self.up: dict[int, float] = {}  # spi_i -> when IkeSaUp came
        self.events: list[Event] = []

    def close(self) -> None:
        self.sock.close()

    def start(self, config: IkeConfig) -> IkeSa:
        now = time.monotonic()
        sa = IkeSa.initiate(config, local=(self.source, IKE_PORT), remote=self.target,
                            rng=SystemRng(), now=now)  # fmt: skip
        self.sas[sa.spi_i] = sa
        self.flush()
        return sa

    def send(self, data: bytes) -> None:
        with contextlib.suppress(OSError):  # a full send buffer: as if lost on the way
            self.sock.sendto(data, self.target)

    def flush(self) -> None:
        now = time.monotonic()
        for sa in list(self.sas.values()):
            timer = sa.get_timer()
            if timer is not None and now >= timer:
                sa.handle_timer(now)
            for data, _ in sa.datagrams_to_send(now):
                if not self.init_only or data[18] == ExchangeType.IKE_SA_INIT:
                    self.send(data)
            while (event := sa.next_event()) is not None:
                self.events.append(event)
                if isinstance(event, IkeSaUp):
                    self.up[sa.spi_i] = now

    def serve(self, until: Callable[[], bool], timeout: float) -> bool:
        """Move datagrams until ``until()`` holds or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.sock, selectors.EVENT_READ)
            while not until():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                if sel.select(min(left, 0.05)):
                    self._drain()
                self.flush()
        return True

    def _drain(self) -> None:
        for _ in range(256):
            try:
                data, src = self.sock.recvfrom(65535)
            except BlockingIOError:
                return
            sa = self.sas.get(int.from_bytes(data[:8], "big")) if len(data) >= 28 else None
            if sa is not None:
                sa.receive_datagram(data, src, time.monotonic())


def handshakes(config: IkeConfig, source: str, target: str, count: int, timeout: float,
               gap: float) -> dict[str, object]:  # fmt: skip
    latencies: list[float] = []
    failed = 0
    client = Client(source, target)
    try:
        for _ in range(count):
            t0 = time.monotonic()
            sa = client.start(config)
            if client.serve(lambda: sa.spi_i in client.up, timeout):  # noqa: B023
                latencies.append((client.up[sa.spi_i] - t0) * 1000)
                sa.delete(time.monotonic())
                client.flush()
                client.serve(lambda: sa.is_destroyed, 2.0)  # noqa: B023
            else:
                failed += 1
            del client.sas[sa.spi_i]
            time.sleep(gap)
    finally:
        client.close()
    out: dict[str, object] = {"latencies_ms": [round(x, 2) for x in latencies], "failed": failed}
    if latencies:
        out["median_ms"] = round(statistics.median(latencies), 2)
    return out


def caps(config: IkeConfig, source: str, target: str, count: int, children: int,
         timeout: float) -> dict[str, object]:  # fmt: skip
    """IKE SAs and Child SAs of one identity (see the module docstring)."""
    client = Client(source, target)
    # Without INITIAL_CONTACT: each new IKE SA would replace the others (RFC 7296 §2.4).
    config = dataclasses.replace(config, initial_contact=False)
    try:
        sas = [client.start(config) for _ in range(count)]
        client.serve(lambda: all(sa.is_established or sa.is_destroyed for sa in sas), timeout)
        up = [sa for sa in sas if sa.is_established and not sa.is_destroyed]
        refused = [e.reason for e in client.events if isinstance(e, IkeSaDown)]
        child_up = child_failed = 0
        failures: list[str] = []
        if up and children:
            first = len(client.events)
            for _ in range(children):
                up[0].create_child(config.children[0], time.monotonic())
            client.flush()

            def settled() -> bool:
                new = client.events[first:]
                return sum(isinstance(e, (ChildSaUp, ChildSaFailed)) for e in new) >= children

            client.serve(settled, timeout)
            new = client.events[first:]
            child_up = sum(isinstance(e, ChildSaUp) for e in new)
            failures = [e.reason for e in new if isinstance(e, ChildSaFailed)]
            child_failed = len(failures)
        return {"ike_up": len(up), "ike_refused": refused, "children_up": child_up,
                "children_refused": child_failed, "child_failures": failures[:3]}  # fmt: skip
    finally:
        client.close()


def modp_request(group: int, ke: bytes) -> bytes:
    """An IKE_SA_INIT request offering AES-GCM / SHA-256 with MODP ``group`` and ``ke``."""
    name = {14: "modp2048", 15: "modp3072", 16: "modp4096"}[group]
    spec = parse_ike(f"aes128gcm16-prfsha256-{name}")[0]
    payloads = (SaPayload((spec.to_proposal(1),)), KePayload(group, ke),
                NoncePayload(os.urandom(32)))  # fmt: skip
    return encode(Message(1, 0, ExchangeType.IKE_SA_INIT, 0, False, True, payloads))


def checksum(header: bytes) -> int:
    total = sum(int.from_bytes(header[i : i + 2], "big") for i in range(0, len(header), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def spoof(target: str, net: str, rate: float, seconds: float, group: int,
          ke_kind: str) -> dict[str, object]:  # fmt: skip
    """Raw IPv4/UDP datagrams from random addresses of ``net`` (paced, bounded)."""
    spoof_net = ipaddress.ip_network(net)
    dst = socket.inet_aton(target)
    templates = []
    for _ in range(16):
        if ke_kind == "one":
            ke = (1).to_bytes(MODP_LEN[group], "big")
        else:
            ke = b"\x7f" + os.urandom(MODP_LEN[group] - 1)  # below p, above 1
        templates.append(modp_request(group, ke))
    sent = 0
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    try:
        start = time.monotonic()
        end = start + seconds
        while (now := time.monotonic()) < end:
            due = int((now - start) * rate)
            while sent < due:
                ike = bytearray(random.choice(templates))
                ike[0:8] = os.urandom(8)
                host = random.randrange(1, spoof_net.num_addresses - 1)
                src = (spoof_net.network_address + host).packed
                udp = (IKE_PORT.to_bytes(2, "big") + IKE_PORT.to_bytes(2, "big")
                       + (8 + len(ike)).to_bytes(2, "big") + bytes(2))  # fmt: skip
                ip = bytearray(b"\x45\x00" + (28 + len(ike)).to_bytes(2, "big") + os.urandom(2)
                               + b"\x00\x00\x40\x11\x00\x00" + src + dst)  # fmt: skip
                ip[10:12] = checksum(bytes(ip)).to_bytes(2, "big")
                with contextlib.suppress(OSError):  # a full queue: lost
                    sock.sendto(bytes(ip) + udp + bytes(ike), (target, 0))
                sent += 1
            time.sleep(0.001)
    finally:
        sock.close()
    return {"sent": sent, "seconds": seconds, "rate": rate}


def _hold(client: Client, config: IkeConfig, count: int, seconds: float) -> dict[str, int]:
    """``count`` IKE_SA_INITs (COOKIEs answered): how many got a real answer."""
    sas = [client.start(config) for _ in range(count)]
    client.serve(lambda: all(sa.spi_r for sa in sas), seconds)
    held = sum(1 for sa in sas if sa.spi_r)
    return {"requests": count, "half_open": held}


def hold(config: IkeConfig, source: str, target: str, count: int,
         seconds: float) -> dict[str, int]:  # fmt: skip
    client = Client(source, target, init_only=True)
    try:
        return _hold(client, config, count, seconds)
    finally:
        client.close()


def fragments(config: IkeConfig, source: str, target: str, sas: int, messages: int,
              size: int) -> dict[str, int]:  # fmt: skip
    """Incomplete fragment sets on half-open IKE SAs (see the module docstring)."""
    cfg = config
    client = Client(source, target, init_only=True)
    sent = octets = 0
    try:
        result = _hold(client, cfg, sas, 10.0)
        for sa in [s for s in client.sas.values() if s.spi_r and s.peer_fragmentation]:
            for n in range(messages):  # the expected Message ID (1), then others
                body = NotifyPayload(PRIVATE_STATUS, bytes(size - 200))
                mid = 1 if n == 0 else 100 * n
                msg = Message(sa.spi_i, sa.spi_r, ExchangeType.IKE_AUTH, mid, False, True,
                              (body,) * 30)  # fmt: skip
                assert sa._crypt_out is not None  # (IKE_SA_INIT is done)
                pieces = encode_fragments(msg, sa._crypt_out, size)
                client.sock.setblocking(True)
                for piece in pieces[:-1]:  # never the last: the set stays incomplete
                    client.sock.sendto(piece, client.target)
                    sent, octets = sent + 1, octets + len(piece)
                    time.sleep(0.002)
                client.sock.setblocking(False)
        return result | {"fragments": sent, "bytes": octets}
    finally:
        client.close()


def mutations(data: bytes, rnd: random.Random) -> Iterator[bytes]:
    """Endless mutants of one IKE datagram."""
    while True:
        b = bytearray(data)
        kind = rnd.randrange(7)
        if kind == 0:  # bit flips
            for _ in range(rnd.randint(1, 8)):
                i = rnd.randrange(len(b))
                b[i] ^= 1 << rnd.randrange(8)
        elif kind == 1:  # cut
            b = b[: rnd.randrange(len(b))]
        elif kind == 2:  # header length field
            b[24:28] = rnd.choice([0, 1, 28, len(b) - 1, len(b) + 1, 0xFFFFFFFF]).to_bytes(4, "big")
        elif kind == 3:  # a payload's next-payload / length bytes
            i = rnd.randrange(16, min(len(b), 64))
            b[i] = rnd.choice([0, 1, 33, 34, 40, 41, 46, 53, 255])
        elif kind == 4:  # exchange type, flags, Message ID
            i = rnd.choice([18, 19, 20, 23])
            b[i] = rnd.randrange(256)
        elif kind == 5:  # random bytes spliced in
            i = rnd.randrange(len(b))
            b[i:i] = rnd.randbytes(rnd.randint(1, 64))
        else:  # a payload length set to huge / tiny values
            i = rnd.randrange(28, max(29, len(b) - 4))
            b[i + 2 : i + 4] = rnd.choice([0, 3, 4, 0xFFFF]).to_bytes(2, "big")
        yield bytes(b)


def fuzz(config: IkeConfig, source: str, target: str, count: int, seed: int,
         seconds: float) -> dict[str, int]:  # fmt: skip
    rnd = random.Random(seed)
    client = Client(source, target, init_only=True)
    sent = 0
    try:
        init = IkeSa.initiate(config, local=(source, IKE_PORT), rng=SystemRng(), now=0,
                              remote=client.target).datagrams_to_send(0)[0][0]  # fmt: skip
        templates: list[list[bytes]] = [[init]]
        held = _hold(client, config, 2, 10.0)
        for sa in [s for s in client.sas.values() if s.spi_r]:
            msgs = [Message(sa.spi_i, sa.spi_r, ExchangeType.IKE_AUTH, 1, False, True,
                            (NotifyPayload(NotifyType.INITIAL_CONTACT),)),
                    Message(sa.spi_i, sa.spi_r, ExchangeType.INFORMATIONAL, 1, False, True,
                            ())]  # fmt: skip
            templates += [sa.encode(m) for m in msgs]
            big = Message(sa.spi_i, sa.spi_r, ExchangeType.IKE_AUTH, 1, False, True,
                          (NotifyPayload(PRIVATE_STATUS, bytes(3000)),))  # fmt: skip
            templates.append(sa.encode(big))  # fragments, if the peer takes them
        sources = [mutations(t, rnd) for group in templates for t in group]
        end = time.monotonic() + seconds
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as natt:
            natt.bind((source, NATT_PORT))
            while sent < count and time.monotonic() < end:
                data = next(rnd.choice(sources))
                if rnd.random() < 0.5:
                    client.send(data)
                else:
                    natt.sendto(NON_ESP_MARKER + data, (target, NATT_PORT))
                sent += 1
                if sent % 50 == 0:
                    time.sleep(0.01)  # paced: about 5,000 a second at most
        return held | {"sent": sent}
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m espfast.tools.ikeload", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("mode", choices=["handshakes", "spoof", "hold", "fragments", "caps", "fuzz"])
    p.add_argument("args", nargs="+", help="CONFIG TARGET (spoof: TARGET)")
    p.add_argument("--source", help="our address (UDP 500 is bound there; not for spoof)")
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per handshake")
    p.add_argument("--gap", type=float, default=0.05, help="seconds between handshakes")
    p.add_argument("--rate", type=float, default=2000.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--group", type=int, default=15, choices=sorted(MODP_LEN))
    p.add_argument("--ke", choices=["one", "random"], default="one")
    p.add_argument("--spoof-net", default="198.18.128.0/17")
    p.add_argument("--sas", type=int, default=10)
    p.add_argument("--messages", type=int, default=4)
    p.add_argument("--size", type=int, default=60000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--children", type=int, default=0)
    a = p.parse_args(argv)
    result: dict[str, object]
    if a.mode == "spoof":
        result = spoof(a.args[0], a.spoof_net, a.rate, a.seconds, a.group, a.ke)
    else:
        if len(a.args) != 2 or not a.source:
            p.error(f"{a.mode} takes CONFIG TARGET and --source")
        cfg, target = ike_config(a.args[0]), a.args[1]
        if a.mode == "handshakes":
            result = handshakes(cfg, a.source, target, a.count, a.timeout, a.gap)
        elif a.mode == "hold":
            result = dict(hold(cfg, a.source, target, a.count, a.seconds))
        elif a.mode == "caps":
            result = caps(cfg, a.source, target, a.count, a.children, a.timeout)
        elif a.mode == "fragments":
            result = dict(fragments(cfg, a.source, target, a.sas, a.messages, a.size))
        else:
            result = dict(fuzz(cfg, a.source, target, a.count, a.seed, a.seconds))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
