"""AUTH payload computation (RFC 7296 §2.15): the signed octets and PSK authentication.

Signatures over these octets come from control/signature.py through the hooks in
config.AuthConfig; PSK is computed here.
"""

from __future__ import annotations

import hmac

from .crypto import Prf

KEY_PAD = b"Key Pad for IKEv2"


def signed_octets(real_message: bytes, peer_nonce: bytes, prf: Prf, sk_p: bytes,
                  id_body: bytes) -> bytes:  # fmt: skip
    """InitiatorSignedOctets = RealMessage1 | NonceRData | MACedIDForI (and the mirror for
    the responder), MACedIDFor = prf(SK_p, RestOfIDPayload): the ID payload body."""
    return real_message + peer_nonce + prf(sk_p, id_body)


def psk_auth(prf: Prf, secret: bytes, octets: bytes) -> bytes:
    """AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)."""
    return prf(prf(secret, KEY_PAD), octets)


def psk_verify(prf: Prf, secret: bytes, octets: bytes, auth_data: bytes) -> bool:
    """Constant-time comparison of the peer's PSK AUTH data with the expected value."""
    return hmac.compare_digest(psk_auth(prf, secret, octets), auth_data)
