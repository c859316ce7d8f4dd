"""An EAP-MSCHAPv2 road warrior that misbehaves, from inside a namespace, at a running
``espfast up`` gateway (tests/security/test_sec_eap.py runs it as a script).

``python eapprobe.py MODE CONFIG TARGET SOURCE [SECONDS]``: an initiator built by espfast.control
from the ``espfast up`` client config CONFIG (local_auth = "eap-mschapv2") runs over a
UDP socket bound to SOURCE, and at its first or second EAP round does what MODE says:

- ``honest``: nothing wrong (the password in CONFIG may still be wrong);
- ``stall``: stop answering once the gateway sent its first EAP request;
- ``truncated``, ``length``, ``wrong-id``, ``nak``, ``huge-identity``: a malformed or
  unexpected EAP response instead of the identity;
- ``bad-mschap``, ``early-success``: a malformed MS-CHAPv2 response / a Success response
  in place of the MS-CHAPv2 response;
- ``skip-eap``: AUTH (made up) right away instead of EAP.

Prints one JSON object: ``outcome`` (established, refused, stalled, timeout), the
``reason`` the initiator gave, and ``responses``: per IKE_AUTH response, its payload and
notify names. Bounded: at most SECONDS (10 s at most), and the initiator's own
retransmission limits.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from espfast.config import load_up
from espfast.control.constants import ExchangeType, NotifyType
from espfast.control.eap import EapCode, EapPacket, EapType, encode_eap
from espfast.control.events import IkeSaDown
from espfast.control.ike_sa import IkeSa
from espfast.control.message import Message
from espfast.control.payloads import AuthPayload, EapPayload, NotifyPayload, Payload, payload_type
from espfast.control.rng import SystemRng
from espfast.control.tasks.ike_auth_eap import IkeAuthEap
from espfast.netns import Namespace


def probe(ns: Namespace, mode: str, conf: Path, target: str, source: str,
          limit: float = 10.0, script: str = __file__) -> dict[str, Any]:  # fmt: skip
    """Run the probe ``script`` (this one, or eaptlsprobe.py) in ``ns``: its JSON answer."""
    out = ns.run(sys.executable, script, mode, str(conf), target, source, str(limit))
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def half_open(ns: Namespace) -> int:
    """The IKE SAs of the ``espfast up`` in ``ns`` not (yet) established."""
    from updaemon import status

    return sum(1 for sa in status(ns) if sa["state"] != "ESTABLISHED")


NON_ESP_MARKER = bytes(4)
LIMIT = 10.0  # seconds


def bad_eap(mode: str, good: EapPacket, round_no: int) -> bytes | None:
    """The bytes to send instead of ``good`` in EAP round ``round_no`` (None: ``good``)."""
    if round_no == 1:
        if mode == "truncated":
            return encode_eap(good)[:3]
        if mode == "length":
            raw = encode_eap(good)
            return raw[:2] + (len(raw) + 7).to_bytes(2, "big") + raw[4:]
        if mode == "wrong-id":
            return encode_eap(replace(good, identifier=(good.identifier + 1) & 0xFF))
        if mode == "nak":
            return encode_eap(EapPacket(EapCode.RESPONSE, good.identifier, EapType.NAK, b"\x04"))
        if mode == "huge-identity":
            return encode_eap(replace(good, data=b"x" * 1000))
    if round_no == 2:
        if mode == "bad-mschap":
            data = bytearray(good.data)
            data[4] = 48  # Value-Size is 49
            return encode_eap(replace(good, data=bytes(data)))
        if mode == "early-success":
            return encode_eap(replace(good, data=bytes([3])))
    return None


def instrument(sa: IkeSa, mode: str, responses: list[list[str]]) -> None:
    task = next(t for t in sa.tm.queue if isinstance(t, IkeAuthEap))
    build, rounds = task.build, [0]
    record_responses(sa, responses)

    def mutated_build() -> list[Payload]:
        payloads = build()
        if task.stage == "eap" and task.eap_out is not None:
            rounds[0] += 1
            if mode == "skip-eap":
                return [AuthPayload(2, bytes(32))]
            bad = bad_eap(mode, task.eap_out, rounds[0])
            if bad is not None:
                return [EapPayload(bad)]
        return payloads

    task.build = mutated_build  # type: ignore[method-assign]


def record_responses(sa: IkeSa, responses: list[list[str]]) -> None:
    """Each IKE_AUTH response's payload and notify names, appended to ``responses``."""
    on_response = sa.tm.on_response

    def record(msg: Message, raw: bytes, now: float) -> None:
        if msg.exchange == ExchangeType.IKE_AUTH:
            names = []
            for p in msg.payloads:
                if isinstance(p, NotifyPayload):
                    try:
                        names.append(f"N({NotifyType(p.notify_type).name})")
                    except ValueError:
                        names.append(f"N({p.notify_type})")
                else:
                    names.append(str(payload_type(p)))
            responses.append(names)
        on_response(msg, raw, now)

    sa.tm.on_response = record  # type: ignore[method-assign]


Instrument = Callable[[IkeSa, str, list[list[str]]], None]


def run(mode: str, config: str, target: str, source: str, limit: str = "",
        instrument: Instrument = instrument, stalled_after: int = 1) -> dict[str, Any]:  # fmt: skip
    """The probe's conversation; ``mode`` "stall" stops once ``stalled_after`` responses
    carried EAP."""
    conn = load_up(config).connections[0]
    responses: list[list[str]] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        port = sock.getsockname()[1]
        start = time.monotonic()
        sa = IkeSa.initiate(conn.ike, local=(source, port), remote=(target, 500),
                            rng=SystemRng(), now=start)  # fmt: skip
        instrument(sa, mode, responses)
        outcome, reason = "timeout", ""
        while time.monotonic() - start < min(float(limit or LIMIT), LIMIT):
            now = time.monotonic()
            if mode == "stall" and sum("48" in r for r in responses) >= stalled_after:
                outcome = "stalled"
                break
            for data, (host, dport) in sa.datagrams_to_send(now):
                sock.sendto(NON_ESP_MARKER + data if dport == 4500 else data, (host, dport))
            while (event := sa.next_event()) is not None:
                if isinstance(event, IkeSaDown):
                    reason = event.reason
            if sa.is_established:
                outcome = "established"
                break
            if sa.is_destroyed:
                outcome = "refused"
                break
            timer = sa.get_timer()
            sock.settimeout(max(0.01, min(0.2, (timer or now + 0.2) - now)))
            try:
                data, addr = sock.recvfrom(65535)
            except TimeoutError:
                sa.handle_timer(time.monotonic())
                continue
            if addr[1] == 4500:
                if data[:4] != NON_ESP_MARKER:
                    continue
                data = data[4:]
            sa.receive_datagram(data, addr, time.monotonic())
    return {"outcome": outcome, "reason": reason, "responses": responses}


def main(argv: list[str]) -> int:
    print(json.dumps(run(*argv[:5])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
