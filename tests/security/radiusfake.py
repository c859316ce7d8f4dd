"""A RADIUS server that also attacks its client (run as a script in a namespace): it
answers each Access-Request (EAP-MSCHAPv2 for one user, with our own EAP server and MPPE
keys) but first sends three forgeries: its answer with a wrong Response Authenticator,
its answer from another source address, and its answer with a wrong
Message-Authenticator (Response Authenticator made right). Bounded: it exits after
``--lifetime`` seconds.

    radiusfake.py LISTEN SPOOF_FROM SECRET_FILE USER PASSWORD_FILE [--lifetime S]
"""

from __future__ import annotations

import argparse
import os
import socket
import time

from espfast.control.eap import EapFailure, EapServer, decode_eap, encode_eap, nt_password_hash
from espfast.control.radius import Attr, Code
from espfast.control.radius.codec import (
    MICROSOFT,
    MS_MPPE_RECV_KEY,
    MS_MPPE_SEND_KEY,
    Request,
    decode,
    eap_attributes,
    eap_message,
    encode_answer,
    md5,
    mppe_encrypt,
)
from espfast.control.rng import SystemRng


def _vsa(t: int, key: bytes, secret: bytes, req_auth: bytes) -> tuple[int, bytes]:
    v = mppe_encrypt(key, secret, req_auth, bytes([0x80 | os.urandom(1)[0], os.urandom(1)[0]]))
    return Attr.VENDOR_SPECIFIC, MICROSOFT.to_bytes(4, "big") + bytes([t, len(v) + 2]) + v


class Server:
    def __init__(self, secret: bytes, user: str, password: str) -> None:
        self.secret = secret
        self.users = {user: nt_password_hash(password)}
        self.eap: EapServer | None = None
        self.answered: dict[bytes, bytes] = {}  # request authenticator -> our answer

    def answer(self, data: bytes) -> tuple[bytes, Request]:
        p = decode(data)
        req = Request(p.identifier, p.authenticator, data)
        if p.authenticator in self.answered:  # a retransmission
            return self.answered[p.authenticator], req
        pkt = decode_eap(eap_message(p))
        if self.eap is None:
            self.eap = EapServer(self.users.get, SystemRng())
            self.eap.identifier, self.eap.rounds = pkt.identifier, 1
        try:
            out = self.eap.process(pkt)
        except EapFailure:
            code, attrs = Code.ACCESS_REJECT, eap_attributes(b"\x04\x00\x00\x04")
        else:
            attrs = eap_attributes(encode_eap(out))
            if out.code == 3 and self.eap.msk is not None:
                code = Code.ACCESS_ACCEPT
                attrs += [_vsa(MS_MPPE_RECV_KEY, self.eap.msk[:32], self.secret, p.authenticator),
                          _vsa(MS_MPPE_SEND_KEY, self.eap.msk[32:], self.secret,
                               p.authenticator)]  # fmt: skip
            else:
                code = Code.ACCESS_CHALLENGE
                attrs.append((Attr.STATE, b"fake-state"))
        answer = encode_answer(code, req, attrs, self.secret)
        self.answered[p.authenticator] = answer
        return answer, req

    def forgeries(self, answer: bytes, req: Request) -> tuple[bytes, bytes]:
        """(wrong Response Authenticator, wrong Message-Authenticator)."""
        bad_auth = bytearray(answer)
        bad_auth[4] ^= 0x55
        bad_mac = bytearray(answer)
        bad_mac[-1] ^= 0x55  # the Message-Authenticator is our last attribute
        body = bytes(bad_mac[20:])
        bad_mac[4:20] = md5(bytes(bad_mac[:4]) + req.authenticator + body + self.secret)
        return bytes(bad_auth), bytes(bad_mac)


def main() -> None:
    ap = argparse.ArgumentParser()
    for name in ("listen", "spoof_from", "secret_file", "user", "password_file"):
        ap.add_argument(name)
    ap.add_argument("--lifetime", type=float, default=60.0)
    a = ap.parse_args()
    secret = open(a.secret_file, "rb").read().strip()  # noqa: SIM115
    password = open(a.password_file).read().strip()  # noqa: SIM115
    server = Server(secret, a.user, password)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((a.listen, 1812))
    spoof = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    spoof.bind((a.spoof_from, 1812))
    end = time.monotonic() + a.lifetime
    print("fake radius ready", flush=True)
    while (left := end - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data, peer = sock.recvfrom(4096)
        except TimeoutError:
            break
        try:
            answer, req = server.answer(data)
        except Exception as e:  # a test server: say it, go on
            print(f"fake radius: cannot answer: {e}", flush=True)
            continue
        bad_auth, bad_mac = server.forgeries(answer, req)
        sock.sendto(bad_auth, peer)
        spoof.sendto(answer, peer)  # right bytes, wrong source
        sock.sendto(bad_mac, peer)
        sock.sendto(answer, peer)
        print(f"fake radius: answered code {answer[0]} with 3 forgeries", flush=True)


if __name__ == "__main__":
    main()
