"""iOS / macOS: a configuration profile (.mobileconfig) with an IKEv2 VPN payload.

The profile is a property list (Apple's Configuration Profile Reference): a top-level
``Configuration`` payload whose ``PayloadContent`` holds

- ``com.apple.security.root``: each CA that signed the gateway's certificate (DER);
- ``com.apple.security.pkcs12``: the client's key and certificate (PKCS#12, password
  protected; the device asks for the password when the profile is installed);
- ``com.apple.vpn.managed`` with ``VPNType = IKEv2``: the server, both identities, the
  authentication method (for EAP-MSCHAPv2 users ``AuthenticationMethod = None``,
  ``ExtendedAuthEnabled = 1``, ``AuthName`` and, only when given, ``AuthPassword``; the
  gateway is still checked with its certificate), and the algorithms in
  ``IKESecurityAssociationParameters`` / ``ChildSecurityAssociationParameters`` (Apple's
  names for them below).

``PayloadIdentifier`` is stable for one gateway connection (installing a newer profile
replaces the older one); every ``PayloadUUID`` is fresh per generation. With a signing
certificate the plist is wrapped in CMS SignedData (PKCS#7, content attached), which the
device shows as "Verified" when it trusts the signer.
"""

from __future__ import annotations

import plistlib
import re
import uuid
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs7

from espfast.control.certs import PrivateKey
from espfast.control.constants import DhGroup
from espfast.control.proposals import Encr
from espfast.profiles.choose import (
    AES128,
    AES128GCM,
    AES256,
    AES256GCM,
    CHACHA,
    SHA256,
    SHA384,
    SHA512,
    Caps,
    Choice,
    choose,
)  # fmt: skip
from espfast.profiles.gateway import (
    AUTH_EAP_MSCHAPV2,
    AUTH_EAP_TLS,
    AUTH_PUBKEY,
    GatewayProfile,
    ProfileError,
    client_pkcs12,
)

ENCRYPTION: dict[Encr, str] = {AES128: "AES-128", AES256: "AES-256", AES128GCM: "AES-128-GCM",
              AES256GCM: "AES-256-GCM", CHACHA: "ChaCha20Poly1305"}  # fmt: skip
INTEGRITY: dict[int, str] = {SHA256: "SHA2-256", SHA384: "SHA2-384", SHA512: "SHA2-512"}
DH_GROUPS: dict[int, int] = {DhGroup.MODP_2048: 14, DhGroup.MODP_3072: 15, DhGroup.MODP_4096: 16,
             DhGroup.ECP_256: 19, DhGroup.ECP_384: 20, DhGroup.ECP_521: 21,
             DhGroup.CURVE25519: 31}  # fmt: skip

CAPS = Caps(
    "iOS/macOS",
    "AES-CBC/GCM 128/256, ChaCha20-Poly1305, SHA2-256/384/512, MODP-2048/3072/4096, "
    "ECP-256/384/521, Curve25519",
    ike_encr=frozenset(ENCRYPTION), ike_integ=frozenset(INTEGRITY), ike_dh=frozenset(DH_GROUPS),
    esp_encr=frozenset(ENCRYPTION), esp_integ=frozenset(INTEGRITY), pfs=frozenset(DH_GROUPS),
    prf_follows_integ=True,
)  # fmt: skip

# How the VPN payload says each client authentication method (AUTH_* -> keys).
# With EAP the client has no IKE credential of its own ("None") and logs in with
# AuthName / AuthPassword; the gateway still proves itself with its certificate. A
# certificate with ExtendedAuthEnabled is EAP-TLS: the device's certificate inside EAP.
AUTH: dict[str, dict[str, Any]] = {
    AUTH_PUBKEY: {"AuthenticationMethod": "Certificate", "ExtendedAuthEnabled": 0},
    AUTH_EAP_MSCHAPV2: {"AuthenticationMethod": "None", "ExtendedAuthEnabled": 1},
    AUTH_EAP_TLS: {"AuthenticationMethod": "Certificate", "ExtendedAuthEnabled": 1},
}
MIN_LIFETIME, MAX_LIFETIME = 10, 1440  # minutes, the range the VPN payload takes


def certificate_type(key: PrivateKey | CertificatePublicKeyTypes) -> str:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "RSA"
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return {256: "ECDSA256", 384: "ECDSA384", 521: "ECDSA521"}[key.curve.key_size]
    raise ProfileError(f"iOS/macOS take no {type(key).__name__} certificates")


def identifier_base(gw: GatewayProfile) -> str:
    """Reverse-DNS style, stable for one server and connection."""
    words = [re.sub(r"[^A-Za-z0-9-]+", "-", w).strip("-") or "x"
             for w in (*reversed(gw.server.split(".")), gw.name)]  # fmt: skip
    return "espfast.vpn." + ".".join(words)


def _lifetime(seconds: float) -> int:
    minutes = int(seconds // 60) if seconds else MAX_LIFETIME
    return max(MIN_LIFETIME, min(MAX_LIFETIME, minutes))


def _payload(kind: str, ident: str, name: str, **content: Any) -> dict[str, Any]:
    return {"PayloadType": kind, "PayloadVersion": 1, "PayloadIdentifier": ident,
            "PayloadUUID": str(uuid.uuid4()).upper(), "PayloadDisplayName": name,
            **content}  # fmt: skip


def vpn_settings(gw: GatewayProfile, choice: Choice) -> dict[str, Any]:
    if gw.auth not in AUTH:
        raise ProfileError(f"iOS/macOS profiles do not support {gw.auth} yet")
    ike_sa = {
        "EncryptionAlgorithm": ENCRYPTION[choice.ike_encr],
        "IntegrityAlgorithm": INTEGRITY[choice.ike_integ],
        "DiffieHellmanGroup": DH_GROUPS[choice.ike_dh],
        "LifeTimeInMinutes": _lifetime(gw.ike_lifetime.rekey_time),
    }
    pfs = choice.pfs != DhGroup.NONE
    child_sa = {
        "EncryptionAlgorithm": ENCRYPTION[choice.esp_encr],
        # AEAD ciphers ignore it; the device still wants a value.
        "IntegrityAlgorithm": INTEGRITY.get(choice.esp_integ, INTEGRITY[choice.ike_integ]),
        "DiffieHellmanGroup": DH_GROUPS[choice.pfs if pfs else choice.ike_dh],
        "LifeTimeInMinutes": _lifetime(gw.child_lifetime.rekey_time),
    }
    settings: dict[str, Any] = {
        "RemoteAddress": gw.server,
        "RemoteIdentifier": gw.gateway_id_text,
        **AUTH[gw.auth],
        "IKESecurityAssociationParameters": ike_sa,
        "ChildSecurityAssociationParameters": child_sa,
        "EnablePFS": int(pfs),
        "DeadPeerDetectionRate": "Medium",
        "DisableMOBIKE": 0,
        "DisableRedirect": 0,
        "EnableCertificateRevocationCheck": 0,
        "UseConfigurationAttributeInternalIPSubnet": 0,
    }
    issuer_cn = gw.cas[0].subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if issuer_cn:
        settings["ServerCertificateIssuerCommonName"] = str(issuer_cn[0].value)
    if gw.client is not None:
        settings["LocalIdentifier"] = gw.client_id_text
        settings["CertificateType"] = certificate_type(gw.client.key)
    if gw.user is not None:
        # The user name is also the IKE identity, as the other formats send it; the
        # certificate type is the gateway's (what the device checks its AUTH against).
        settings["LocalIdentifier"] = settings["AuthName"] = gw.user_text
        settings["CertificateType"] = certificate_type(gw.gateway_cert.public_key())
        if gw.password is not None:
            settings["AuthPassword"] = gw.password
    return settings


Signer = tuple[x509.Certificate, PrivateKey, list[x509.Certificate]]


def render(gw: GatewayProfile, p12_password: bytes | None, signer: Signer | None = None) -> bytes:
    """The .mobileconfig (signed if ``signer`` is given: certificate, key, chain)."""
    choice = choose(gw, CAPS)
    base = identifier_base(gw)
    content: list[dict[str, Any]] = []
    for i, ca in enumerate(gw.cas):
        cn = ca.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        content.append(_payload(
            "com.apple.security.root", f"{base}.ca{i}", str(cn[0].value) if cn else "VPN CA",
            PayloadContent=ca.public_bytes(serialization.Encoding.DER),
            PayloadCertificateFileName=f"ca{i}.cer",
        ))  # fmt: skip
    vpn = vpn_settings(gw, choice)
    if gw.client is not None:
        bundle = client_pkcs12(gw, p12_password)
        identity = _payload(
            "com.apple.security.pkcs12", f"{base}.identity", gw.client_id_text,
            PayloadContent=bundle, PayloadCertificateFileName="client.p12",
        )  # fmt: skip
        content.append(identity)
        vpn["PayloadCertificateUUID"] = identity["PayloadUUID"]
    content.append(_payload(
        "com.apple.vpn.managed", f"{base}.vpn", "VPN",
        UserDefinedName=gw.display_name, VPNType="IKEv2", IKEv2=vpn,
    ))  # fmt: skip
    profile = _payload("Configuration", base, gw.display_name, PayloadContent=content,
                       PayloadDescription=f"IKEv2 VPN to {gw.server}",
                       PayloadRemovalDisallowed=False)  # fmt: skip
    data = plistlib.dumps(profile, fmt=plistlib.FMT_XML, sort_keys=True)
    return data if signer is None else sign(data, *signer)


def sign(data: bytes, cert: x509.Certificate, key: PrivateKey,
         chain: list[x509.Certificate]) -> bytes:  # fmt: skip
    """CMS SignedData (DER) with the profile attached, signed with SHA-256."""
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ProfileError("the signing key must be RSA or ECDSA (CMS signing of profiles)")
    builder = pkcs7.PKCS7SignatureBuilder().set_data(data).add_signer(cert, key, hashes.SHA256())
    for extra in chain:
        builder = builder.add_certificate(extra)
    return builder.sign(serialization.Encoding.DER, [])
