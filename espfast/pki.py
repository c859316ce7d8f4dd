"""``espfast pki``: a small CA for certificate-authenticated gateways and clients.

    espfast pki ca --out DIR [--type ecdsa|rsa|ed25519] [--dn "O=espfast, CN=espfast CA"]
    espfast pki issue --ca DIR --id gw.example.org [--san 198.18.0.1 ...] --out DIR [--client]
    espfast pki crl --ca DIR --revoke DIR/gw.example.org.crt [--revoke SERIAL ...]

``ca`` writes DIR/ca.crt and DIR/ca.key; ``issue`` writes NAME.crt and NAME.key (NAME from
``--name``, else from the identity; with ``--p12`` also NAME.p12 for client devices);
``crl`` writes (or extends) DIR/ca.crl, which the gateway's trust store takes as a
revocation list. Private keys are PKCS#8 PEM files with mode 0600. What the certificates
contain is described in espfast/ca.py, which is imported only when the command runs (so
that ``espfast --help`` stays fast).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import sys
from pathlib import Path

KEY_TYPES = ("ecdsa", "rsa", "ed25519")
CURVES = ("p256", "p384", "p521")
DEFAULT_CA_DN = "O=espfast, CN=espfast Root CA"
P12_PASSWORD_ENV = "ESPFAST_P12_PASSWORD"  # noqa: S105 - the variable's name, no secret


# --- the command ----------------------------------------------------------------------------


def _key_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--type", choices=KEY_TYPES, default="ecdsa", help="key type")
    parser.add_argument("--bits", type=int, default=3072, help="RSA key size (default 3072)")
    parser.add_argument(
        "--curve", choices=CURVES, default="p256", help="ECDSA curve (default p256)"
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing files")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="pki_command", required=True, metavar="SUBCOMMAND")
    ca = sub.add_parser("ca", help="create a CA (ca.crt, ca.key)")
    ca.add_argument("--out", required=True, type=Path, help="directory to write into")
    ca.add_argument("--dn", default=DEFAULT_CA_DN, help=f'subject (default "{DEFAULT_CA_DN}")')
    ca.add_argument("--days", type=int, default=3650, help="validity (default 3650)")
    _key_arguments(ca)
    issue = sub.add_parser("issue", help="issue a gateway or client certificate")
    issue.add_argument("--ca", required=True, type=Path, help="directory with ca.crt, ca.key")
    issue.add_argument("--id", required=True, help="identity: FQDN, IP address, user@domain or DN")
    issue.add_argument(
        "--san", action="append", default=[], help="another subjectAltName (repeatable)"
    )
    issue.add_argument("--dn", help="subject DN (default CN=<id>, or the id if it is a DN)")
    issue.add_argument("--client", action="store_true", help="a client (clientAuth) cert")
    issue.add_argument("--out", required=True, type=Path, help="directory to write into")
    issue.add_argument("--name", help="file name stem (default: from the identity)")
    issue.add_argument("--days", type=int, default=730, help="validity (default 730)")
    issue.add_argument(
        "--p12",
        action="store_true",
        help="also write NAME.p12 (key, certificate, CA) for importing into client devices; "
        f"password from ${P12_PASSWORD_ENV}, else a random one that is printed",
    )
    _key_arguments(issue)
    crl = sub.add_parser("crl", help="revoke certificates: write (or extend) the CA's CRL")
    crl.add_argument("--ca", required=True, type=Path, help="directory with ca.crt, ca.key")
    crl.add_argument(
        "--revoke",
        action="append",
        default=[],
        metavar="CERT|SERIAL",
        help="a certificate file or a hex serial number to revoke (repeatable)",
    )
    crl.add_argument("--out", type=Path, help="CRL file, extended if it exists (default CA/ca.crl)")
    crl.add_argument("--days", type=int, default=30, help="until the next update (default 30)")


def _run_ca(args: argparse.Namespace, now: dt.datetime) -> list[Path]:
    from espfast.ca import build_ca, cert_pem, generate_key, key_pem, write_file

    key = generate_key(args.type, bits=args.bits, curve=args.curve)
    cert = build_ca(key, args.dn, now=now, days=args.days)
    args.out.mkdir(parents=True, exist_ok=True)
    write_file(args.out / "ca.key", key_pem(key), mode=0o600, force=args.force)
    write_file(args.out / "ca.crt", cert_pem(cert), mode=0o644, force=args.force)
    return [args.out / "ca.crt", args.out / "ca.key"]


def _run_issue(args: argparse.Namespace, now: dt.datetime) -> list[Path]:
    from espfast.ca import (
        cert_pem,
        file_name,
        generate_key,
        issue_cert,
        key_pem,
        load_ca,
        pkcs12_bundle,
        write_file,
    )
    from espfast.control.identity import Identity

    identity = Identity.parse(args.id)
    sans = [Identity.parse(s) for s in args.san]
    ca_cert, ca_key = load_ca(args.ca)
    key = generate_key(args.type, bits=args.bits, curve=args.curve)
    cert = issue_cert(
        ca_cert,
        ca_key,
        key.public_key(),
        identity,
        now=now,
        sans=sans,
        dn=args.dn,
        client=args.client,
        days=args.days,
    )
    stem = args.name or file_name(identity)
    args.out.mkdir(parents=True, exist_ok=True)
    write_file(args.out / f"{stem}.key", key_pem(key), mode=0o600, force=args.force)
    write_file(args.out / f"{stem}.crt", cert_pem(cert), mode=0o644, force=args.force)
    written = [args.out / f"{stem}.crt", args.out / f"{stem}.key"]
    if args.p12:
        password = os.environ.get(P12_PASSWORD_ENV) or secrets.token_urlsafe(12)
        bundle = pkcs12_bundle(stem, cert, key, ca_cert, password.encode())
        write_file(args.out / f"{stem}.p12", bundle, mode=0o600, force=args.force)
        written.append(args.out / f"{stem}.p12")
        if P12_PASSWORD_ENV not in os.environ:
            print(f"password of {args.out / f'{stem}.p12'}: {password}")
    return written


def _run_crl(args: argparse.Namespace, now: dt.datetime) -> list[Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from espfast.ca import build_crl, load_ca, write_file
    from espfast.control.certs import load_certificate_file

    ca_cert, ca_key = load_ca(args.ca)
    serials = []
    for item in args.revoke:
        if Path(item).exists():
            cert = load_certificate_file(item)[0]
            if cert.issuer != ca_cert.subject:
                raise ValueError(f"{item} was not issued by this CA")
            serials.append(cert.serial_number)
        else:
            try:
                serials.append(int(item.replace(":", ""), 16))
            except ValueError:
                raise ValueError(
                    f"{item!r} is neither a certificate file nor a hex serial"
                ) from None
    out = args.out or args.ca / "ca.crl"
    previous = None
    if out.exists():
        try:
            previous = x509.load_pem_x509_crl(out.read_bytes())
        except ValueError as exc:
            raise ValueError(f"{out}: not a PEM CRL: {exc}") from None
    crl = build_crl(ca_cert, ca_key, serials, now=now, days=args.days, previous=previous)
    write_file(out, crl.public_bytes(serialization.Encoding.PEM), mode=0o644, force=True)
    return [out]


_SUBCOMMANDS = {"ca": _run_ca, "issue": _run_issue, "crl": _run_crl}


def run(args: argparse.Namespace) -> int:
    now = dt.datetime.now(dt.UTC)
    try:
        written = _SUBCOMMANDS[args.pki_command](args, now)
    except (ValueError, OSError) as exc:
        print(f"espfast pki {args.pki_command}: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0
