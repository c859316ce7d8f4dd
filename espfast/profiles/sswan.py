"""Android: a .sswan profile for the strongSwan VPN Client app.

A JSON object the app imports (strongSwan's "Android VPN client profiles"): ``uuid``,
``name``, ``type`` (``ikev2-cert`` for certificates, ``ikev2-eap`` for a user name and
password), ``remote`` (``addr``, ``id``, and in ``cert`` the CA that signed the gateway's
certificate, base64 DER), ``local`` (``id`` and ``p12``, the client's PKCS#12, base64, the
app asking for its password on import; or with EAP ``id`` and ``eap_id``, the user name,
the app asking for the password), ``ike-proposal`` / ``esp-proposal`` in strongSwan's
keyword syntax, and ``split-tunneling.subnets`` when the gateway does not route
everything. The app speaks every algorithm espfast does, so the proposals are simply the
strongest the gateway takes.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from cryptography.hazmat.primitives import serialization

from espfast.profiles.choose import Caps, choose
from espfast.profiles.gateway import (
    AUTH_EAP_MSCHAPV2,
    AUTH_EAP_TLS,
    AUTH_PUBKEY,
    GatewayProfile,
    ProfileError,
    client_pkcs12,
)

CAPS = Caps("the strongSwan app", "every algorithm espfast speaks", esn=True)

# The profile's "type" per client authentication method.
AUTH = {AUTH_PUBKEY: "ikev2-cert", AUTH_EAP_MSCHAPV2: "ikev2-eap", AUTH_EAP_TLS: "ikev2-eap-tls"}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def render(gw: GatewayProfile, p12_password: bytes | None) -> bytes:
    if gw.auth not in AUTH:
        raise ProfileError(f"strongSwan app profiles do not support {gw.auth} yet")
    choice = choose(gw, CAPS)
    remote: dict[str, Any] = {
        "addr": gw.server,
        "id": gw.gateway_id_text,
        "cert": _b64(gw.cas[0].public_bytes(serialization.Encoding.DER)),
    }
    local: dict[str, Any] = {}
    if gw.client is not None:
        local["id"] = gw.client_id_text
        local["p12"] = _b64(client_pkcs12(gw, p12_password))
    if gw.user is not None:
        # The app asks for the password; the format has no place for it.
        local["id"] = local["eap_id"] = gw.user_text
    profile: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "name": gw.display_name,
        "type": AUTH[gw.auth],
        "remote": remote,
        "local": local,
        "ike-proposal": str(choice.ike),
        "esp-proposal": str(choice.esp),
    }
    if not gw.full_tunnel:
        profile["split-tunneling"] = {"subnets": " ".join(str(n) for n in gw.remote_ts)}
    return (json.dumps(profile, indent=2) + "\n").encode()
