"""What a client profile needs to know about the gateway, read from its ``espfast up`` config.

:func:`gateway_profile` loads the gateway's config with :func:`espfast.config.load_up` and
derives, for one connection: the gateway's identity, the CAs a client must trust to check
the gateway's certificate, the authentication method clients use, the IKE and ESP
proposals the gateway accepts, the networks behind it and the virtual IP families its pool
hands out. :func:`client_credential` checks the client's certificate the way the gateway
will (the chain to one of its CAs, the identity it may claim). Every refusal is one
:class:`ProfileError` line.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography import x509

from espfast.config import ConfigError, load_up
from espfast.control.auth import id_matches
from espfast.control.certs import (
    AuthenticationError,
    PrivateKey,
    TrustStore,
    decode_certificate,
    load_certificate_file,
    load_private_key,
    read_file,
)
from espfast.control.config import IkeConfig, Lifetime
from espfast.control.constants import IdType
from espfast.control.identity import Identity
from espfast.control.proposals import ProposalSpec

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# How clients authenticate to the gateway, by the name the client formats use. Each format
# module has a table keyed by these; a method a format lacks is refused there.
AUTH_PUBKEY = "pubkey"
AUTH_EAP_MSCHAPV2 = "eap-mschapv2"  # a user name and password (remote_auth on the gateway)
AUTH_EAP_TLS = "eap-tls"  # the client's certificate inside EAP (remote_auth on the gateway)

_HOSTNAME = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                       r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")  # fmt: skip


class ProfileError(ValueError):
    """A profile cannot be made; the message says why in one line."""


def client_auth_method(ike: IkeConfig) -> str:
    """The method a client of this connection authenticates with (one of AUTH_*)."""
    auth = ike.auth
    if auth.psk is not None:
        raise ProfileError(
            f"connection {ike.name!r} authenticates with a pre-shared key; client profiles "
            'are for certificate road warriors (auth = "pubkey"), a shared key in every '
            "profile would let each client impersonate the gateway"
        )
    if auth.eap_users is not None:
        return AUTH_EAP_MSCHAPV2
    if auth.eap_tls is not None:
        return AUTH_EAP_TLS
    if auth.verifier is None or not auth.cacerts:
        raise ProfileError(f"connection {ike.name!r} has no CA to check clients against")
    return AUTH_PUBKEY


def check_text(value: str, what: str) -> str:
    """Identities and names go into plists, scripts and config files: no control
    characters (each format escapes the rest)."""
    if not value or any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value):
        raise ProfileError(f"{what} {value!r} is empty or contains control characters")
    return value


def parse_server(text: str) -> str:
    """The address clients dial: an IP address or a DNS name, nothing else."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if not _HOSTNAME.fullmatch(text):
        raise ProfileError(f"--server {text!r} is neither an IP address nor a DNS name")
    return text.lower()


@dataclass(frozen=True)
class ClientCredential:
    """The client's certificate and key, and the identity it will claim."""

    cert: x509.Certificate
    key: PrivateKey = field(repr=False)
    chain: tuple[x509.Certificate, ...]  # intermediates between it and the gateway's CA
    identity: Identity
    ca: x509.Certificate  # the gateway's CA its chain ends at (goes into its PKCS#12)


@dataclass(frozen=True)
class GatewayProfile:
    """Everything a client format renders, derived from one gateway connection."""

    name: str  # the connection's name, also the client connection's
    display_name: str  # what a device shows
    server: str  # the address clients dial (IP or DNS name)
    gateway_id: Identity
    gateway_cert: x509.Certificate
    cas: tuple[x509.Certificate, ...]  # what clients trust for the gateway's certificate
    client_cas: tuple[x509.Certificate, ...]  # what the gateway trusts for clients'
    auth: str  # AUTH_*
    ike_proposals: tuple[ProposalSpec, ...]  # what the gateway accepts, its order
    esp_proposals: tuple[ProposalSpec, ...]
    child: str
    remote_ts: tuple[IPNetwork, ...]  # the networks behind the gateway
    vip_families: tuple[int, ...]  # 4 and/or 6: what the pool hands out
    ike_lifetime: Lifetime
    child_lifetime: Lifetime
    dpd_delay: float
    remote_id_pattern: Identity | None  # whom the gateway accepts (None: any it can verify)
    client: ClientCredential | None = None
    # EAP: the gateway's user lookup (name -> NT hash), the user a profile is for and,
    # only when asked for, the password it carries.
    users: Callable[[str], bytes | None] | None = field(default=None, repr=False, compare=False)
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def gateway_id_text(self) -> str:
        return check_text(str(self.gateway_id), "the gateway's identity")

    @property
    def client_id_text(self) -> str:
        assert self.client is not None
        return check_text(str(self.client.identity), "the client's identity")

    @property
    def user_text(self) -> str:
        assert self.user is not None
        return check_text(self.user, "the user name")

    @property
    def full_tunnel(self) -> bool:
        return any(net.prefixlen == 0 for net in self.remote_ts)


def gateway_profile(config: str | Path, conn: str, server: str, child: str | None = None,
                    display_name: str | None = None) -> GatewayProfile:  # fmt: skip
    try:
        up = load_up(config)
    except ConfigError as e:
        raise ProfileError(str(e)) from None
    found = [c for c in up.connections if c.name == conn]
    if not found:
        names = ", ".join(repr(c.name) for c in up.connections)
        raise ProfileError(f"{config}: no connection named {conn!r} (there are {names})")
    ike = found[0].ike
    auth = client_auth_method(ike)
    if not ike.pool:
        raise ProfileError(f"connection {conn!r} has no address pool: road warriors need one "
                           "(pool = [\"198.19.100.0/24\"])")  # fmt: skip
    if not ike.children:
        raise ProfileError(f"connection {conn!r} has no child")
    chosen = next((c for c in ike.children if child is None or c.name == child), None)
    if chosen is None:
        raise ProfileError(f"connection {conn!r} has no child named {child!r}")
    gateway_cert = decode_certificate(ike.auth.certs[0])
    top = decode_certificate(ike.auth.certs[-1])
    cas = tuple(decode_certificate(c) for c in ike.auth.cacerts)
    issuers = tuple(ca for ca in cas if ca.subject == top.issuer)
    if not issuers:
        raise ProfileError(
            f"connection {conn!r}: its certificate was issued by "
            f'"{top.issuer.rfc4514_string()}", which is not among its cacerts; clients '
            "could not check it (list that CA in cacerts: the profile carries it)"
        )
    remote_ts = tuple(n for ts in chosen.local_ts for n in ts.networks())
    return GatewayProfile(
        name=conn,
        display_name=check_text(display_name or f"{conn} ({server})", "--name"),
        server=parse_server(server),
        gateway_id=Identity.decode(*ike.local_id),
        gateway_cert=gateway_cert,
        cas=issuers,
        client_cas=cas,
        auth=auth,
        ike_proposals=ike.ike_proposals,
        esp_proposals=chosen.esp_proposals,
        child=chosen.name,
        remote_ts=remote_ts,
        vip_families=tuple(sorted({n.version for n in ike.pool})),
        ike_lifetime=ike.lifetime,
        child_lifetime=chosen.lifetime,
        dpd_delay=ike.dpd_delay,
        remote_id_pattern=None if ike.remote_id is None else Identity.decode(*ike.remote_id),
        users=ike.auth.eap_users,
    )


def _candidate_ids(cert: x509.Certificate) -> list[Identity]:
    """The identities a certificate proves: its subjectAltNames, then its subject DN."""
    out: list[Identity] = []
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = x509.SubjectAlternativeName([])
    for name in sans:
        if isinstance(name, x509.RFC822Name):
            out.append(Identity(IdType.RFC822_ADDR, name.value.encode()))
        elif isinstance(name, x509.DNSName):
            out.append(Identity(IdType.FQDN, name.value.encode()))
        elif isinstance(name, x509.IPAddress) and not isinstance(name.value, IPNetwork):
            version = name.value.version
            out.append(Identity(IdType.IPV4_ADDR if version == 4 else IdType.IPV6_ADDR,
                                name.value.packed))  # fmt: skip
    if len(cert.subject):
        out.append(Identity.from_name(cert.subject))
    return out


def client_credential(gw: GatewayProfile, cert_path: Path, key_path: Path,
                      identity: str | None = None) -> ClientCredential:  # fmt: skip
    """The client's certificate, checked as the gateway will check it: it chains to one of
    the gateway's CAs, and the identity it claims is in it and one the gateway accepts."""
    try:
        certs = load_certificate_file(cert_path)
        key = load_private_key(read_file(key_path), str(key_path))
    except ValueError as e:
        raise ProfileError(str(e)) from None
    cert, chain = certs[0], tuple(certs[1:])
    from cryptography.hazmat.primitives import serialization

    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, spki) != cert.public_key().public_bytes(der, spki):
        raise ProfileError(f"{key_path} is not the key of {cert_path}")
    # The gateway verifies against every CA it trusts for clients, not only the one that
    # issued its own certificate.
    try:
        TrustStore(gw.client_cas).verify_chain(cert, list(chain), time.time())
    except (AuthenticationError, ValueError) as e:
        raise ProfileError(f"the gateway would refuse {cert_path}: {e}") from None
    if identity is not None:
        try:
            candidates = [Identity.parse(identity)]
        except ValueError as e:
            raise ProfileError(f"--client-id: {e}") from None
        if candidates[0] not in _candidate_ids(cert):
            raise ProfileError(f"--client-id {identity!r} is not in {cert_path}")
    else:
        candidates = _candidate_ids(cert)
    pattern = gw.remote_id_pattern
    accepted = [
        i for i in candidates if pattern is None or id_matches(i.encode(), pattern.encode())
    ]
    if not accepted:
        raise ProfileError(f"the gateway accepts only clients named {pattern}, and "
                           f"{cert_path} proves none such")  # fmt: skip
    top = chain[-1] if chain else cert
    ca = next(c for c in gw.client_cas if c.subject == top.issuer)
    return ClientCredential(cert, key, chain, accepted[0], ca)


def eap_user(gw: GatewayProfile, name: str, password: str | None) -> GatewayProfile:
    """``gw`` for the EAP user ``name`` (and its ``password``, to go into the profile),
    checked as the gateway will check them: a user of its user file, with that password,
    whose identity the gateway accepts."""
    from espfast import users
    from espfast.control.eap import nt_password_hash
    from espfast.control.tasks.ike_auth_eap import eap_peer_id

    if gw.auth != AUTH_EAP_MSCHAPV2 or gw.users is None:
        raise ProfileError(
            f"connection {gw.name!r} authenticates clients with certificates, "
            "not passwords: give --client-cert and --client-key, not --user"
        )
    try:
        users.check_name(name)
    except users.UserFileError as e:
        raise ProfileError(f"--user: {e}") from None
    check_text(name, "--user")
    known = gw.users(name)
    if known is None:
        raise ProfileError(f"the gateway's user file has no user {name!r} "
                           f"(add one with: espfast user add {name})")  # fmt: skip
    if password is not None:
        if not password:
            raise ProfileError("the password file is empty")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in password):
            raise ProfileError("the password contains control characters")  # never echoed
        if not hmac.compare_digest(nt_password_hash(password), known):
            raise ProfileError(f"the gateway would refuse this password for {name!r}")
    pattern = gw.remote_id_pattern
    idi = eap_peer_id(name)
    if pattern is not None and not id_matches((idi.id_type, idi.data), pattern.encode()):
        raise ProfileError(f"the gateway accepts only clients named {pattern}, and user "
                           f"{name!r} is not one")  # fmt: skip
    return replace(gw, user=name, password=password)


def certificate_names_server(gw: GatewayProfile) -> bool:
    """Whether the gateway's certificate names the address clients dial (a DNS or IP
    subjectAltName): Windows checks the certificate against the name it dials."""
    try:
        sans = gw.gateway_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return False
    names = {n.lower() for n in sans.value.get_values_for_type(x509.DNSName)}
    names |= {str(a) for a in sans.value.get_values_for_type(x509.IPAddress)}
    return gw.server in names


def client_pkcs12(gw: GatewayProfile, password: bytes | None) -> bytes:
    """The client's key, certificate and CA as a password-protected PKCS#12 (the encryption
    every native client imports, see espfast.ca.pkcs12_bundle)."""
    from espfast.ca import pkcs12_bundle

    assert gw.client is not None
    if not password:
        raise ProfileError("the client's PKCS#12 needs a password")
    c = gw.client
    return pkcs12_bundle(gw.client_id_text, c.cert, c.key, c.ca, password)
