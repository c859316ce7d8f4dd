"""What one IKE SA needs to know from the configuration (the daemon fills these in)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .events import TrafficSelector
from .proposals import DEFAULT_ESP, DEFAULT_IKE, ProposalSpec, parse_esp, parse_ike

if TYPE_CHECKING:
    from .eap.tls import EapTlsSetup

# Signature authentication hooks (filled from control/signature.py by the daemon):
# Signer(octets, peer_hash_algorithms) -> (AUTH method, AUTH data)
Signer = Callable[[bytes, Collection[int]], tuple[int, bytes]]
# Verifier(method, data, octets, peer_certs_der, (peer_id_type, peer_id_data)) -> the
# peer's canonical identity (one for all the ID spellings its certificate proves, see
# auth.certificate_identity; None: the ID payload's own canonical form), raising
# RemoteProtocolError(AUTHENTICATION_FAILED) when the peer is not who it claims.
Verifier = Callable[[int, bytes, bytes, Sequence[bytes], tuple[int, bytes]], bytes | None]


@dataclass(frozen=True)
class Lifetime:
    """strongSwan's names and meaning, in seconds (0: never): rekey after ``rekey_time``
    minus a random part of ``rand_time``; hard end at ``life_time``. Child SAs also
    rekey after ``rekey_bytes`` / ``rekey_packets`` (0: off) as the dataplane counts."""

    rekey_time: float
    life_time: float
    rand_time: float
    rekey_bytes: int = 0
    rekey_packets: int = 0
    # IKE SAs only: authenticate afresh after this long (RFC 7296 §2.8.3, strongSwan's
    # reauth_time; 0: never), make-before-break: a new IKE SA and its Child SAs come up
    # before the old IKE SA is deleted. Jittered by rand_time like rekey_time. Only the
    # end that initiated the IKE SA reauthenticates (the other cannot always reach it).
    reauth_time: float = 0.0


# swanctl.conf defaults: Child SAs rekey after 1 h (life_time +10 %, rand_time the
# difference); IKE SAs after 4 h (over_time 10 % of it, rand_time = over_time).
CHILD_LIFETIME = Lifetime(3600.0, 3960.0, 360.0)
IKE_LIFETIME = Lifetime(14400.0, 15840.0, 1440.0)


# strongSwan's child actions (swanctl.conf): what happens once the peer is found dead
# (dpd_action) or closes the IKE or Child SA (close_action). "clear": nothing more;
# "trap": a trap that negotiates again on matching traffic (IkeManager.acquire);
# "restart" / "start": negotiate again at once.
DPD_ACTIONS = ("clear", "trap", "restart")
CLOSE_ACTIONS = ("none", "trap", "start")
# strongSwan's uniqueness policies for IKE SAs with the same identities (see IkeManager):
# no (only INITIAL_CONTACT replaces), never (not even that), keep (refuse a second one from
# another address), replace (a new one from the peer replaces the others).
UNIQUE_POLICIES = ("no", "never", "keep", "replace")
SEND_CERT_POLICIES = ("always", "ifasked", "never")  # AuthConfig.send_cert


@dataclass(frozen=True)
class ChildConfig:
    name: str
    local_ts: tuple[TrafficSelector, ...]
    remote_ts: tuple[TrafficSelector, ...]
    esp_proposals: tuple[ProposalSpec, ...] = field(default_factory=lambda: parse_esp(DEFAULT_ESP))
    lifetime: Lifetime = CHILD_LIFETIME
    dpd_action: str = "clear"
    close_action: str = "none"


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
    cacerts: tuple[bytes, ...] = ()  # the trusted CAs themselves, DER (client profiles)
    hash_algorithms: tuple[int, ...] = (2, 3, 4, 5)  # RFC 7427: SHA2-256/384/512, Identity
    peer_uses_psk: bool | None = None  # None: same as local (psk set -> PSK)
    # Which CERT payloads we send (strongSwan's send_cert): "always" (also to peers that
    # sent no CERTREQ, like the native clients), "ifasked" (only after a CERTREQ), "never".
    send_cert: str = "always"
    # EAP in IKE_AUTH (RFC 7296 §2.16). ``eap_identity``: we authenticate with
    # EAP-MSCHAPv2 as this user (the NT hash of its password in ``eap_nt_hash``), and the
    # gateway with its certificate. ``eap_users``: the peer authenticates so against
    # these users (name -> NT hash, None if unknown) and we sign.
    eap_identity: str | None = None
    eap_nt_hash: bytes | None = field(default=None, repr=False)
    eap_users: Callable[[str], bytes | None] | None = None
    # ``eap_radius``: the peer's EAP goes to RADIUS servers instead (the shell's client;
    # control/radius/relay.py), and we sign.
    eap_radius: bool = False
    # EAP-TLS (RFC 5216/9190): ``eap_tls`` the peers prove a certificate inside EAP and
    # we sign; ``eap_tls_peer`` we do so as ``eap_identity``. Each: the TLS context with
    # our certificate and the check of the other end's (control/eap/tls.py).
    eap_tls: EapTlsSetup | None = None
    eap_tls_peer: EapTlsSetup | None = None

    @property
    def eap_server(self) -> bool:
        """Whether peers of this connection authenticate with EAP (users, TLS, RADIUS)."""
        return self.eap_users is not None or self.eap_radius or self.eap_tls is not None


NamedPool = tuple[
    str,
    tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...],
    frozenset[ipaddress.IPv4Network | ipaddress.IPv6Network],
]


@dataclass(frozen=True)
class IkeConfig:
    name: str
    local_id: tuple[int, bytes]
    remote_id: tuple[int, bytes] | None  # None: accept any identity the peer proves
    auth: AuthConfig
    children: tuple[ChildConfig, ...] = ()
    ike_proposals: tuple[ProposalSpec, ...] = field(default_factory=lambda: parse_ike(DEFAULT_IKE))
    # encap = yes: always UDP-encapsulate ESP (RFC 3948), making the peer see a NAT with a
    # faked NAT_DETECTION_SOURCE_IP (as strongSwan's encap=yes does, RFC 7296 §2.23). No:
    # ESP in UDP only when a NAT is detected, else plain ESP (IP protocol 50). espfast's
    # default stays yes (strongSwan's is no): it works through any middlebox and needs no
    # raw socket (CAP_NET_RAW).
    force_encap: bool = True
    retransmit_timeout: float = 4.0  # strongSwan's defaults: 4 s, x1.8, 5 tries
    retransmit_base: float = 1.8
    retransmit_tries: int = 5
    fragment_size: int = 1280  # RFC 7383: fragment when the message exceeds this
    fragmentation: bool = True
    lifetime: Lifetime = IKE_LIFETIME
    dpd_delay: float = 0.0  # liveness check after this long without a word (0: off)
    initial_contact: bool = True  # N(INITIAL_CONTACT) in our first IKE_AUTH
    mobike: bool = True  # RFC 4555: N(MOBIKE_SUPPORTED) in IKE_AUTH (strongSwan's default)
    # RFC 4555 §3.9: our UPDATE_SA_ADDRESSES carry N(NO_NATS_ALLOWED) (the peer refuses a
    # move whose addresses a NAT rewrote: UNEXPECTED_NAT_DETECTED). strongSwan has none.
    mobike_no_nats: bool = False
    # Follow the peer to where its authenticated ESP comes from (as WireGuard does; the
    # dataplane reports it, IkeSa.follow_esp). strongSwan has none. Off: only IKE moves it.
    follow_esp: bool = False
    unique: str = "no"  # one of UNIQUE_POLICIES (strongSwan's default: no)
    # Virtual IPs (RFC 7296 §2.19): as the responder, the addresses to hand out to peers
    # that ask (strongSwan's pools) and the DNS servers to tell them; as the initiator,
    # the addresses to ask for (strongSwan's vips: 0.0.0.0 / :: for any of that family).
    pool: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    dns: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = ()
    vips: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = ()
    # The peers that may use this connection as responder (strongSwan's remote_addrs):
    # IKE_SA_INIT from any other address never selects it. Empty: any address.
    remote_addrs: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # Networks of ``pool`` that came from first-last ranges: every address in them is
    # handed out (of the other prefixes, not the network and IPv4 broadcast addresses).
    pool_exact: frozenset[ipaddress.IPv4Network | ipaddress.IPv6Network] = frozenset()
    # Named pools a RADIUS server may pick for a user (Framed-Pool, RFC 2869 §5.18): (name,
    # networks, those of them that came from ranges); ``pool`` serves everyone else.
    framed_pools: tuple[NamedPool, ...] = ()

    def accepts_from(self, address: str) -> bool:
        """Whether a peer at ``address`` (an IP address, no port) may use this connection."""
        if not self.remote_addrs:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.remote_addrs)

    def __post_init__(self) -> None:
        where = f"connection {self.name!r}"
        if not self.ike_proposals:
            raise ValueError(f"{where}: no IKE proposals")
        if self.auth.psk is None and self.auth.signer is None and not self.auth.eap_identity:
            raise ValueError(f"{where}: neither a pre-shared key nor a certificate to sign with")
        if self.auth.eap_identity and self.auth.psk:
            raise ValueError(f"{where}: EAP authentication and a PSK exclude each other")
        if self.auth.eap_identity and (self.auth.eap_nt_hash is None) == (
            self.auth.eap_tls_peer is None
        ):
            raise ValueError(f"{where}: EAP authentication needs a password or a certificate")
        if self.auth.eap_server and self.auth.signer is None:
            raise ValueError(f"{where}: EAP clients need a gateway certificate to sign with")
        if self.auth.psk is not None and len(self.auth.psk) < 8:
            raise ValueError(f"{where}: pre-shared key shorter than 8 bytes")
        if self.auth.send_cert not in SEND_CERT_POLICIES:
            raise ValueError(f"{where}: send_cert {self.auth.send_cert!r} is not one of "
                             f"{', '.join(SEND_CERT_POLICIES)}")  # fmt: skip
        names = [c.name for c in self.children]
        if len(names) != len(set(names)):
            raise ValueError(f"{where}: child names must be unique ({', '.join(names)})")
        for c in self.children:
            if not c.local_ts or not c.remote_ts:
                raise ValueError(f"{where}: child {c.name!r} needs local_ts and remote_ts")
            if not c.esp_proposals:
                raise ValueError(f"{where}: child {c.name!r} has no ESP proposals")
            if c.dpd_action not in DPD_ACTIONS:
                raise ValueError(f"{where}: child {c.name!r}: dpd_action {c.dpd_action!r} "
                                 f"is not one of {', '.join(DPD_ACTIONS)}")  # fmt: skip
            if c.close_action not in CLOSE_ACTIONS:
                raise ValueError(f"{where}: child {c.name!r}: close_action {c.close_action!r} "
                                 f"is not one of {', '.join(CLOSE_ACTIONS)}")  # fmt: skip
        if self.unique not in UNIQUE_POLICIES:
            raise ValueError(f"{where}: unique {self.unique!r} is not one of "
                             f"{', '.join(UNIQUE_POLICIES)}")  # fmt: skip
        if self.fragment_size < 576:
            raise ValueError(f"{where}: fragment_size {self.fragment_size} below 576")
        if self.retransmit_timeout <= 0 or self.retransmit_tries < 0:
            raise ValueError(f"{where}: retransmit_timeout must be > 0, tries >= 0")


def configs_for_peer(configs: Sequence[IkeConfig], address: str) -> tuple[IkeConfig, ...]:
    """The connections a peer at ``address`` may use (their ``remote_addrs``)."""
    return tuple(c for c in configs if c.accepts_from(address))
