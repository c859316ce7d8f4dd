"""``espfast profile``: write a client profile for a gateway connection.

    espfast profile -c gateway.toml --conn rw --for ios --server vpn.example.test \\
        --client-cert alice.crt --client-key alice.key -o alice.mobileconfig

The PKCS#12 inside .mobileconfig, PowerShell and .sswan profiles is protected by the
password in ``--p12-password-file``, else ``$ESPFAST_P12_PASSWORD``, else a random one that
is printed; the device asks for it on import. Everything written is mode 0600 (profiles
carry the client's private key).

For a connection with ``remote_auth = "eap-mschapv2"`` the profile is for a user of the
gateway's user file instead (``--user NAME``, no client certificate). Its password goes
into the profile only when ``--password-file`` gives it (the formats that can carry one:
.mobileconfig, swanctl, espfast); otherwise the device asks for it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from espfast.profiles import DIRECTORY_TYPES, PROFILE_TYPES

if TYPE_CHECKING:
    from espfast.profiles.apple import Signer

P12_PASSWORD_ENV = "ESPFAST_P12_PASSWORD"  # noqa: S105 - the variable's name, no secret
SUFFIX = {"ios": ".mobileconfig", "macos": ".mobileconfig", "windows": ".ps1",
          "android": ".sswan"}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", required=True, type=Path, help="the gateway's config")
    parser.add_argument("--conn", required=True, help="the gateway's connection for clients")
    parser.add_argument(
        "--for", dest="kind", required=True, choices=PROFILE_TYPES, help="the client platform"
    )
    parser.add_argument(
        "--server", required=True, help="the gateway's DNS name or IP address, as clients dial it"
    )
    parser.add_argument("--child", help="the gateway connection's child (default: the first)")
    parser.add_argument("--name", help="the connection's name on the device")
    parser.add_argument("--client-cert", type=Path, help="the client's certificate (PEM)")
    parser.add_argument("--client-key", type=Path, help="the client's private key (PEM)")
    parser.add_argument(
        "--client-id",
        help="the identity the client claims (default: the certificate's first "
        "subjectAltName, else its subject DN)",
    )
    parser.add_argument(
        "--p12-password-file",
        type=Path,
        help="password for the PKCS#12 inside the profile (its first line)",
    )
    parser.add_argument(
        "--user", help="EAP gateways: the user the profile is for (see espfast user)"
    )
    parser.add_argument(
        "--password-file",
        type=Path,
        help="EAP: put this password (the file's content) into the profile; without it the "
        "device asks for it",
    )
    parser.add_argument("--sign-cert", type=Path, help="sign the .mobileconfig with this cert")
    parser.add_argument("--sign-key", type=Path, help="... and this key")
    parser.add_argument(
        "-o", "--out", required=True, type=Path,
        help="the file to write (a directory for strongswan and espfast)",
    )  # fmt: skip
    parser.add_argument("--force", action="store_true", help="overwrite existing files")


def _password(args: argparse.Namespace) -> tuple[bytes, bool]:
    """(password, whether to print it)."""
    if args.p12_password_file is not None:
        lines = args.p12_password_file.read_text().splitlines()
        if not lines or not lines[0]:
            raise ValueError(f"{args.p12_password_file}: empty password")
        return lines[0].encode(), False
    if os.environ.get(P12_PASSWORD_ENV):
        return os.environ[P12_PASSWORD_ENV].encode(), False
    return secrets.token_urlsafe(12).encode(), True


def _eap_password(args: argparse.Namespace) -> str | None:
    """The password to put into an EAP profile, read as the client config reads a
    password_file (its content without the final line break); None: not asked for."""
    if args.password_file is None:
        return None
    return str(args.password_file.read_text().rstrip("\r\n"))


def _signer(args: argparse.Namespace) -> Signer | None:
    from espfast.control.certs import load_certificate_file, load_private_key, read_file

    if args.sign_cert is None and args.sign_key is None:
        return None
    if args.sign_cert is None or args.sign_key is None or args.kind not in ("ios", "macos"):
        raise ValueError("--sign-cert and --sign-key go together, for ios/macos profiles")
    certs = load_certificate_file(args.sign_cert)
    key = load_private_key(read_file(args.sign_key), str(args.sign_key))
    return certs[0], key, list(certs[1:])


def build(args: argparse.Namespace) -> tuple[bytes | dict[str, bytes], bytes | None]:
    """The profile (bytes, or {relative path: bytes} for directory types) and the
    PKCS#12 password to tell the user (None: nothing to tell)."""
    from espfast.control.constants import IdType
    from espfast.profiles import apple, native, sswan, swanctl, windows
    from espfast.profiles.gateway import (
        AUTH_EAP_MSCHAPV2,
        GatewayProfile,
        ProfileError,
        certificate_names_server,
        client_credential,
        eap_user,
        gateway_profile,
    )

    gw = gateway_profile(args.config, args.conn, args.server, args.child, args.name)
    if (args.client_cert is None) != (args.client_key is None):
        raise ProfileError("--client-cert and --client-key go together")
    if args.user is not None:
        if args.client_cert is not None or args.client_id is not None:
            raise ProfileError("--user is for password logins: no --client-cert/--client-id")
        gw = eap_user(gw, args.user, _eap_password(args))
        if gw.password is not None and args.kind in ("windows", "android"):
            print(f"espfast profile: note: {args.kind} profiles never carry the password; the "
                  "device asks for it", file=sys.stderr)  # fmt: skip
    elif args.password_file is not None:
        raise ProfileError("--password-file goes with --user")
    elif args.client_cert is not None:
        if gw.auth == AUTH_EAP_MSCHAPV2:
            raise ProfileError(
                f"connection {args.conn!r} authenticates clients with "
                "passwords (remote_auth): give --user, not a certificate"
            )
        client = client_credential(gw, args.client_cert, args.client_key, args.client_id)
        gw = dataclasses.replace(gw, client=client)
    elif gw.auth == AUTH_EAP_MSCHAPV2:
        raise ProfileError(f"connection {args.conn!r} authenticates clients with passwords: "
                           "give --user NAME (a user of its user file)")  # fmt: skip
    else:
        raise ProfileError(f"connection {args.conn!r} authenticates clients with certificates: "
                           "give --client-cert and --client-key")  # fmt: skip
    password, tell = _password(args) if args.kind not in DIRECTORY_TYPES else (b"", False)
    signer = _signer(args)
    renderers: dict[str, Callable[[GatewayProfile, bytes | None], bytes | dict[str, bytes]]] = {
        "windows": windows.render, "android": sswan.render, "strongswan": swanctl.render,
        "espfast": native.render,
    }  # fmt: skip
    out: bytes | dict[str, bytes]
    if args.kind in ("ios", "macos"):
        out = apple.render(gw, password, signer)
    else:
        out = renderers[args.kind](gw, password)
    if gw.user is not None and gw.password is None and args.kind in DIRECTORY_TYPES:
        where = "DIR/password" if args.kind == "espfast" else "a secrets section"
        print(f"espfast profile: note: no --password-file: put the password of "
              f"{gw.user!r} into {where} before connecting", file=sys.stderr)  # fmt: skip
    if args.kind == "windows" and not certificate_names_server(gw):
        print(f"espfast profile: note: the gateway's certificate does not name {gw.server}; "
              f"Windows refuses it (issue it with --san {gw.server})", file=sys.stderr)  # fmt: skip
    if args.kind in ("ios", "macos") and gw.gateway_id.type == IdType.DER_ASN1_DN:
        print(f"espfast profile: note: the gateway identifies itself by its DN; iOS/macOS "
              f"expect a name or address as RemoteIdentifier (set local_id = \"{gw.server}\" "
              "in the gateway's connection)", file=sys.stderr)  # fmt: skip
    return out, password if tell and gw.client is not None else None


def _write(path: Path, data: bytes, force: bool) -> None:
    from espfast.ca import write_file

    path.parent.mkdir(parents=True, exist_ok=True)
    write_file(path, data, mode=0o600, force=force)


def run(args: argparse.Namespace) -> int:
    from espfast.profiles.gateway import ProfileError

    try:
        out, password = build(args)
        if isinstance(out, dict):
            for rel, data in out.items():
                _write(args.out / rel, data, args.force)
                print(args.out / rel)
        else:
            _write(args.out, out, args.force)
            print(args.out)
    except (ProfileError, ValueError, OSError) as exc:
        print(f"espfast profile: {exc}", file=sys.stderr)
        return 1
    if password is not None:
        print(f"password of the client certificate in {args.out}: {password.decode()}")
    if args.kind in SUFFIX and args.out.suffix != SUFFIX[args.kind]:
        print(f"espfast profile: note: {args.kind} expects a {SUFFIX[args.kind]} file name",
              file=sys.stderr)  # fmt: skip
    return 0
