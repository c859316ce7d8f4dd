"""An EAP-TLS road warrior that misbehaves, from inside a namespace, at a running
``espfast up`` gateway (tests/security/test_sec_eaptls.py runs it as a script).

``python eaptlsprobe.py MODE CONFIG TARGET SOURCE [SECONDS]``: an initiator built by
espfast.control from the ``espfast up`` client config CONFIG (local_auth = "eap-tls")
runs over a UDP socket bound to SOURCE (the loop of eapprobe.py) and, in place of its
EAP-TLS responses, does what MODE says:

- ``honest``: nothing wrong (the certificate or the EAP identity in CONFIG may be);
- ``oversize``: a first fragment announcing a 1 MiB TLS message;
- ``fragments``: one-octet fragments, with M set, without end;
- ``garbage``: a TLS record of nonsense in place of the ClientHello;
- ``restart``: a second ClientHello in place of its certificate and Finished;
- ``stall``: stop answering once the gateway sent its first TLS flight.

Prints one JSON object as eapprobe.py does.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace

from eapprobe import record_responses, run

from espfast.control.eap import EapPacket
from espfast.control.eap.tls import (
    MAX_TLS_MESSAGE,
    TLS_TYPE,
    EapTlsPeer,
    Flags,
    Outgoing,
    pack,
    unpack,
)
from espfast.control.ike_sa import IkeSa
from espfast.control.tasks.ike_auth_eap import IkeAuthEap

GARBAGE = b"\x16\x03\x03\x00\x20" + bytes(range(0xE0, 0x100))


def instrument(sa: IkeSa, mode: str, responses: list[list[str]]) -> None:
    record_responses(sa, responses)
    task = next(t for t in sa.tm.queue if isinstance(t, IkeAuthEap))
    peer = task.peer
    assert isinstance(peer, EapTlsPeer)
    honest, sent = peer.process, [0]
    hello = bytearray()  # our ClientHello, from its fragments
    heard = [False]  # the gateway's TLS flight began

    def process(pkt: EapPacket) -> EapPacket | None:
        if mode == "fragments" and sent[0]:
            sent[0] += 1
            return EapPacket(2, pkt.identifier, TLS_TYPE, pack(Flags.MORE, b"\x16"))
        if pkt.type == TLS_TYPE and unpack(pkt.data)[2]:
            heard[0] = True
        out = honest(pkt)
        if out is None or out.type != TLS_TYPE:
            return out
        sent[0] += 1
        data = unpack(out.data)[2]
        if not heard[0]:
            hello.extend(data)
        elif mode == "restart" and data:  # our certificate, CertificateVerify, Finished
            peer._out = Outgoing(bytes(hello))  # in fragments, as the real thing
            return replace(out, data=peer._out.next())
        if sent[0] == 1 and mode == "oversize":
            return replace(out, data=pack(Flags.MORE, b"\x16" * 200, 1 << 20))
        if sent[0] == 1 and mode == "fragments":
            return replace(out, data=pack(Flags.MORE, b"\x16", MAX_TLS_MESSAGE))
        if sent[0] == 1 and mode == "garbage":
            return replace(out, data=pack(Flags.NONE, GARBAGE))
        return out

    peer.process = process  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    mode, config, target, source = argv[:4]
    limit = argv[4] if len(argv) > 4 else ""
    # A stall: after the responses to Identity, Start and (the first of) the TLS flight.
    print(json.dumps(run(mode, config, target, source, limit, instrument, stalled_after=3)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
