"""EAP (RFC 3748) for IKEv2 (RFC 7296 §2.16), sans-I/O: the packet codec, EAP-Identity,
EAP-MSCHAPv2 (RFC 2759, draft-kamath-pppext-eap-mschapv2) and EAP-TLS (RFC 5216/9190,
control/eap/tls.py) for server and peer.

Nothing here touches sockets, files or the clock; randomness comes from an injected Rng.
"""

from .message import EapCode, EapPacket, EapType, decode_eap, encode_eap
from .mschapv2 import MschapV2Peer, MschapV2Server, nt_password_hash
from .session import EapFailure, EapPeer, EapServer

__all__ = [
    "EapCode",
    "EapFailure",
    "EapPacket",
    "EapPeer",
    "EapServer",
    "EapType",
    "MschapV2Peer",
    "MschapV2Server",
    "decode_eap",
    "encode_eap",
    "nt_password_hash",
]
