"""Bad and abundant IKE traffic at a running ``espfast up``, from inside a namespace.

Run as a script in the sending namespace (``python ikeprobe.py garbage|flood ...``); it
prints one JSON object. Both modes are bounded in count and time.

- ``garbage CONFIG TARGET``: truncated, oversized, wrong-length and random IKE datagrams to
  UDP 500 and to UDP 4500 (there with the non-ESP marker); prints how many were sent.
- ``flood CONFIG TARGET SOURCE...``: one IKE_SA_INIT request (built by espfast.control
  from the ``espfast up`` config CONFIG) from each SOURCE address, in order, then reads the
  answers for a while; prints, per source, what came back: ``init`` (an IKE_SA_INIT
  response with SA, KE, Nonce), ``cookie`` (N(COOKIE) only), ``other`` or ``none``.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import sys
import time

from espfast.config import load_up
from espfast.control.constants import NotifyType
from espfast.control.errors import RemoteProtocolError
from espfast.control.ike_sa import IkeSa
from espfast.control.message import HEADER_LEN, decode
from espfast.control.payloads import KePayload, NotifyPayload
from espfast.control.rng import SystemRng

NON_ESP_MARKER = bytes(4)


def first_init(config: str, source: str, target: str) -> bytes:
    """The IKE_SA_INIT request an initiator for the config's first connection sends."""
    conn = load_up(config).connections[0]
    sa = IkeSa.initiate(
        conn.ike, local=(source, 500), remote=(target, 500), rng=SystemRng(), now=time.monotonic()
    )
    data, _ = sa.datagrams_to_send(time.monotonic())[0]
    return data


def bad_datagrams(template: bytes) -> list[bytes]:
    """Each kind of bad datagram, made from a good IKE_SA_INIT request ``template``."""
    length = len(template)

    def with_length(data: bytes, n: int) -> bytes:
        return data[:24] + n.to_bytes(4, "big") + data[28:]

    big = template + os.urandom(60000)
    return [
        b"",
        template[:1],
        template[: HEADER_LEN - 1],  # truncated inside the header
        template[: length // 2],  # truncated payloads (the header says more)
        with_length(big, len(big)),  # oversized: 60 kB of junk after the payloads
        with_length(template, length + 1),  # wrong length, both ways
        with_length(template, length - 1),
        with_length(template, 0),
        template[:17] + b"\x30" + template[18:],  # IKE major version 3
        *(os.urandom(n) for n in (8, 28, 100, 1000, 1400)),  # random bytes
    ]


def garbage(config: str, target: str) -> dict[str, int]:
    template = first_init(config, "0.0.0.0", target)
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for data in bad_datagrams(template):
            sock.sendto(data, (target, 500))
            # On 4500 the empty datagram would not be IKE at all; everything else gets
            # the marker (a lone 0xff byte is a NAT keepalive, not sent here).
            sock.sendto(NON_ESP_MARKER + data, (target, 4500))
            sent += 2
            time.sleep(0.005)
    return {"sent": sent}


def kind(data: bytes) -> str:
    try:
        msg = decode(data)
    except RemoteProtocolError:
        return "other"
    notifies = [p.notify_type for p in msg.payloads if isinstance(p, NotifyPayload)]
    if notifies == [NotifyType.COOKIE]:
        return "cookie"
    if msg.is_response and msg.get(KePayload) is not None:
        return "init"
    return "other"


def flood(config: str, target: str, sources: list[str], wait: float = 3.0) -> dict[str, str]:
    answers = {src: "none" for src in sources}
    socks: dict[int, tuple[socket.socket, str]] = {}
    with selectors.DefaultSelector() as sel:
        try:
            for src in sources:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.bind((src, 0))
                sock.setblocking(False)
                socks[sock.fileno()] = (sock, src)
                sel.register(sock, selectors.EVENT_READ)
                sock.sendto(first_init(config, src, target), (target, 500))
                time.sleep(0.01)  # one after the other, so the threshold is crossed in order
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and "none" in answers.values():
                for key, _ in sel.select(timeout=0.1):
                    sock, src = socks[key.fd]
                    answers[src] = kind(sock.recv(65535))
        finally:
            for sock, _ in socks.values():
                sock.close()
    return answers


def main(argv: list[str]) -> int:
    if argv[0] == "garbage":
        print(json.dumps(garbage(argv[1], argv[2])))
    elif argv[0] == "flood":
        print(json.dumps(flood(argv[1], argv[2], argv[3:])))
    else:
        raise SystemExit(f"unknown mode {argv[0]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
