"""``espfast up`` connection keys that strongSwan users reach for, under strongSwan's names:
``remote`` as an address list (remote_addrs), ``pool`` ranges, ``send_cert``,
``send_certreq``, ``intermediates``, ``auth = rsa|ecdsa``, ``fragmentation`` /
``fragment_size`` and ``mobike``. espfast/config.py calls these while it reads a
``[[connection]]``; each raises the config's one clear error for a wrong value.
"""

from __future__ import annotations

import ipaddress
import itertools
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from espfast.control.config import SEND_CERT_POLICIES, AuthConfig, NamedPool

if TYPE_CHECKING:
    from espfast.config import IPNetwork, Table
    from espfast.control.certs import LocalCredential

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
SIGNATURE_AUTH = ("pubkey", "rsa", "ecdsa")  # auth = ...: RFC 7427 where offered, or classic
MIN_FRAGMENT_SIZE, MAX_FRAGMENT_SIZE = 576, 65000
DEFAULT_FRAGMENT_SIZE = 1280


def remote(t: Table, default_port: int) -> tuple[tuple[str, int] | None, tuple[IPNetwork, ...]]:
    """``remote`` (strongSwan's remote_addrs): one entry or a list of addresses
    (``198.18.0.2``, with ``:port`` to initiate elsewhere than ``default_port``), prefixes
    (``198.18.4.0/24``), ranges (``198.18.4.10-198.18.4.20``) or ``%any``. We initiate to
    the first plain address; as responder only peers from these addresses may use the
    connection (``%any``: every address). Returns (where to initiate, the allowed
    networks; empty for any)."""
    from espfast.config import parse_endpoint, parse_prefix

    entries = t.get_str_list("remote", required=True)
    if not entries:
        raise t.error("remote", 'needs an address (or "%any")')
    initiate: tuple[str, int] | None = None
    nets: list[IPNetwork] = []
    anywhere = False
    for text in (e.strip() for e in entries):
        if text == "%any":
            anywhere = True
        elif "/" in text:
            nets.append(parse_prefix(t, "remote", text))
        elif "-" in text:
            nets.extend(address_range(t, "remote", text))
        else:
            endpoint = parse_endpoint(t, "remote", text, default_port)
            initiate = initiate or endpoint
            nets.append(ipaddress.ip_network(endpoint[0]))
    return initiate, () if anywhere else tuple(nets)


def address_range(t: Table, key: str, text: str) -> list[IPNetwork]:
    """``first-last`` (both included, one IP version, first <= last) as the prefixes that
    cover exactly it."""
    first_text, _, last_text = text.partition("-")
    ends: list[IPAddress] = []
    for part in (first_text.strip(), last_text.strip()):
        try:
            ends.append(ipaddress.ip_address(part))
        except ValueError:
            raise t.error(key, f"{text!r}: {part!r} is not an IP address") from None
    first, last = ends
    v4 = isinstance(first, ipaddress.IPv4Address) and isinstance(last, ipaddress.IPv4Address)
    v6 = isinstance(first, ipaddress.IPv6Address) and isinstance(last, ipaddress.IPv6Address)
    if (v4 or v6) and int(first) <= int(last):
        return list(ipaddress.summarize_address_range(first, last))
    raise t.error(key, f"{text!r} is not a range (first-last, one IP version, first <= last)")


def pool(t: Table, key: str = "pool") -> tuple[tuple[IPNetwork, ...], frozenset[IPNetwork]]:
    """``pool``: prefixes (``198.19.100.0/24``; not their network address, nor an IPv4
    broadcast address) and ``first-last`` ranges (every address in them), as strongSwan's
    pools ``addrs``. Returns (all the prefixes, those that came from ranges)."""
    from espfast.config import parse_prefix

    nets: list[IPNetwork] = []
    exact: set[IPNetwork] = set()
    for text in t.get_str_list(key):
        if "-" in text and "/" not in text:
            covered = address_range(t, key, text)
            nets += covered
            exact.update(covered)
        else:
            nets.append(parse_prefix(t, key, text))
    return tuple(nets), frozenset(exact)


def framed_pools(t: Table, eap_radius: bool, has_pool: bool) -> tuple[NamedPool, ...]:
    """``framed_pools = { staff = ["198.19.110.0/24"], ... }``: the named pools a RADIUS
    server may choose for a user with Framed-Pool (RFC 2869 §5.18), each as ``pool``
    says; an eap-radius connection with a ``pool`` (for the users it names none for)."""
    if not t.has("framed_pools"):
        return ()
    sub = t.table("framed_pools")
    if not eap_radius:
        raise t.error("framed_pools", 'only for remote_auth = "eap-radius"')
    if not has_pool:
        raise t.error("framed_pools", "needs the connection's pool as well")
    out = []
    for name in sub.data:
        if not 1 <= len(name.encode()) <= 253 or not name.isprintable():  # RFC 2865 §5
            raise sub.error(name, "a pool name is 1 to 253 printable octets")
        nets, exact = pool(sub, name)
        if not nets:
            raise sub.error(name, "an empty pool")
        out.append((name, nets, exact))
    sub.done()
    return tuple(out)


def key_kind(cred: LocalCredential) -> str:
    """ "rsa", "ecdsa" or "ed25519": the type of our private key."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(cred.key, rsa.RSAPrivateKey):
        return "rsa"
    return "ecdsa" if isinstance(cred.key, ec.EllipticCurvePrivateKey) else "ed25519"


def check_signature_kind(t: Table, kind: str, cred: LocalCredential) -> None:
    """``auth = "rsa"`` / ``"ecdsa"`` need a key of that type."""
    have = key_kind(cred)
    if kind != "pubkey" and have != kind:
        raise t.error("auth", f'"{kind}" signs with an {kind.upper()} key, but the key '
                      f"is {have.upper()}")  # fmt: skip


def check_intermediates(t: Table, cred: LocalCredential) -> None:
    """Each certificate after ours (``intermediates``, or appended to the ``cert`` file)
    must be a CA that issued the one before it: the peer checks the chain in that order,
    and a wrong file is better found at start than by every peer."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    from espfast.control.certs import describe

    chain = (cred.cert, *cred.chain)
    for child, parent in itertools.pairwise(chain):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature):
            raise t.error(
                "intermediates",
                f"{describe(parent)} did not issue "
                f"{describe(child)} (list them from ours towards the root)",
            ) from None
        try:
            is_ca = parent.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise t.error("intermediates", f"{describe(parent)} is not a CA certificate")


def cert_exchange(t: Table, auth: AuthConfig) -> AuthConfig:
    """``send_cert`` (always | ifasked | never; strongSwan's default is ifasked, ours
    always: the native clients send no CERTREQ and still need the chain) and
    ``send_certreq`` (true: ask the peer for its certificate, naming the CAs we trust)."""
    from espfast.config import _choice as choice

    send_cert = choice(t, "send_cert", "always", SEND_CERT_POLICIES)
    send_certreq = t.get_bool("send_certreq", True)
    if send_cert != "always" and not auth.certs:
        raise t.error("send_cert", "there is no certificate to send (auth is not pubkey)")
    return replace(auth, send_cert=send_cert, certreq=auth.certreq if send_certreq else ())


def extensions(t: Table) -> dict[str, Any]:
    """IkeConfig's ``fragmentation`` (RFC 7383; strongSwan's yes | accept | no, or
    true/false) with ``fragment_size``, ``mobike`` (RFC 4555; yes | no),
    ``mobike_no_nats`` (RFC 4555 §3.9: our address updates carry NO_NATS_ALLOWED),
    ``follow_esp`` (follow the peer on its first authenticated ESP from a new source) and
    ``encap`` (yes | no: IkeConfig.force_encap; no sends plain ESP, IP protocol 50,
    without a NAT).
    "accept" announces support and takes fragments, but sends whole messages."""
    frag = yes_no(t, "fragmentation", "yes", ("yes", "accept", "no"))
    size = t.get_int("fragment_size", DEFAULT_FRAGMENT_SIZE, MIN_FRAGMENT_SIZE, MAX_FRAGMENT_SIZE)
    if frag == "accept":
        if t.has("fragment_size"):
            raise t.error("fragment_size", 'fragmentation = "accept" sends no fragments')
        size = MAX_FRAGMENT_SIZE
    mobike = yes_no(t, "mobike", "yes", ("yes", "no")) == "yes"
    no_nats = yes_no(t, "mobike_no_nats", "no", ("yes", "no")) == "yes"
    if no_nats and not mobike:
        raise t.error("mobike_no_nats", 'needs mobike = "yes"')
    follow = yes_no(t, "follow_esp", "no", ("yes", "no")) == "yes"
    # strongSwan's encap: yes forces ESP in UDP; no sends plain ESP when no NAT is seen.
    encap = yes_no(t, "encap", "yes", ("yes", "no")) == "yes"
    return {"fragmentation": frag != "no", "fragment_size": size, "mobike": mobike,
            "mobike_no_nats": no_nats, "follow_esp": follow, "force_encap": encap}  # fmt: skip


def yes_no(t: Table, key: str, default: str, choices: tuple[str, ...]) -> str:
    """strongSwan's yes/no words (or a TOML boolean)."""
    value = t.get(key) if t.has(key) else default
    if isinstance(value, bool):
        value = "yes" if value else "no"
    if not isinstance(value, str) or value not in choices:
        raise t.error(key, f"{value!r} is not one of {', '.join(choices)} (or true/false)")
    return value
