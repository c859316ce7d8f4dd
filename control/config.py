"""What one IKE SA needs to know from the configuration (the daemon fills these in)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from .events import TrafficSelector
from .proposals import DEFAULT_ESP, DEFAULT_IKE, ProposalSpec, parse_esp, parse_ike

# Signature authentication hooks (filled from control/signature.py by the daemon):
# Signer(octets, peer_hash_algorithms) -> (AUTH method, AUTH data)
Signer = Callable[[bytes, Collection[int]], tuple[int, bytes]]
# Verifier(method, data, octets, peer_certs_der, (peer_id_type, peer_id_data)) -> None,
# raising RemoteProtocolError(AUTHENTICATION_FAILED) when the peer is not who it claims.
Verifier = Callable[[int, bytes, bytes, Sequence[bytes], tuple[int, bytes]], None]


@dataclass(frozen=True)
class ChildConfig:
    name: str
    local_ts: tuple[TrafficSelector, ...]
    remote_ts: tuple[TrafficSelector, ...]
    esp_proposals: tuple[ProposalSpec, ...] = field(default_factory=lambda: parse_esp(DEFAULT_ESP))


@dataclass(frozen=True)
class AuthConfig:
    """How we prove who we are (``local``) and check the peer (``remote``).

    ``psk``: both sides use AUTH method 2 with this secret. Otherwise ``signer`` builds
    our AUTH (certificates in ``certs``, DER, end entity first) and ``verifier`` checks
    the peer's."""

    psk: bytes | None = field(default=None, repr=False)
    signer: Signer | None = None
    verifier: Verifier | None = None
    certs: tuple[bytes, ...] = ()
    certreq: tuple[bytes, ...] = ()  # SHA-1 hashes of trusted CA public keys (RFC 7296 §3.7)
    hash_algorithms: tuple[int, ...] = (2, 3, 4, 5)  # RFC 7427: SHA2-256/384/512, Identity
    peer_uses_psk: bool | None = None  # None: same as local (psk set -> PSK)


@dataclass(frozen=True)
class IkeConfig:
    name: str
    local_id: tuple[int, bytes]
    remote_id: tuple[int, bytes] | None  # None: accept any identity the peer proves
    auth: AuthConfig
    children: tuple[ChildConfig, ...] = ()
    ike_proposals: tuple[ProposalSpec, ...] = field(default_factory=lambda: parse_ike(DEFAULT_IKE))
    # Always UDP-encapsulate ESP: the dataplane only speaks ESP-in-UDP on 4500, so we make
    # the peer see a NAT (as strongSwan's encap=yes does, RFC 7296 §2.23).
    force_encap: bool = True
    retransmit_timeout: float = 4.0  # strongSwan's defaults: 4 s, x1.8, 5 tries
    retransmit_base: float = 1.8
    retransmit_tries: int = 5
    fragment_size: int = 1280  # RFC 7383: fragment when the message exceeds this
    fragmentation: bool = True
