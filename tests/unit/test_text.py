"""Text from the network, shown: espfast.control.text.printable and the places that use it
(identities in logs and status, certificate names, the status table, the log formatter)."""

from __future__ import annotations

import datetime as dt
import logging
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st
from ikepair import Pair, configs

from espfast.ca import build_ca, generate_key, issue_cert
from espfast.control.certs import describe
from espfast.control.constants import IdType
from espfast.control.identity import Identity
from espfast.control.payloads import IdiPayload
from espfast.control.text import printable
from espfast.logfmt import TextFormatter
from espfast.status import table

CASES = {
    "plain": ("gw.example.test", "gw.example.test"),
    "newline": ("a\nb\r\n", "a\\nb\\r\\n"),
    "tab": ("a\tb", "a\\tb"),
    "ESC sequences": ("\x1b[2J\x1b]0;title\x07", "\\x1b[2J\\x1b]0;title\\x07"),
    "C1 CSI and DEL": ("\x9b31m\x7f", "\\x9b31m\\x7f"),
    "NUL": ("a\x00b", "a\\x00b"),
    "bidi override": ("\u202etxt.exe", "\\u202etxt.exe"),
    "line separator": ("a\u2028b", "a\\u2028b"),
    "private use, non-BMP": ("\U000f0000", "\\U000f0000"),
    "backslash stays": ("a\\nb", "a\\nb"),
    "letters stay": ("Zürich 東京 ☃", "Zürich 東京 ☃"),
}


@pytest.mark.parametrize("case", CASES)
def test_printable(case: str) -> None:
    raw, shown = CASES[case]
    assert printable(raw) == shown
    assert printable(raw.encode()) == shown


def test_bytes_that_are_not_utf8() -> None:
    assert printable(b"ok\xff\xfe\n") == "ok\\xff\\xfe\\n"


@given(st.text() | st.binary())
def test_always_printable_and_idempotent(data: str | bytes) -> None:
    shown = printable(data)
    assert shown.isprintable()
    assert printable(shown) == shown


def test_log_records_are_one_printable_line() -> None:
    fmt = TextFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord("t", logging.WARNING, __file__, 1, "peer %s", ("a\nFAKE \x1b[31m",),
                               None)  # fmt: skip
    assert fmt.format(record) == "WARNING peer a\\nFAKE \\x1b[31m"
    try:
        raise ValueError("boom\nline")
    except ValueError:
        info = sys.exc_info()
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", (), info)
    text = fmt.format(record)
    assert "\n" not in text and text.startswith("ERROR failed\\nTraceback")


def test_status_table_cells_are_escaped() -> None:
    lines = table(["NAME", "REMOTE"], [["site", "evil\n\x1b[2J"]])
    assert lines == ["  NAME  REMOTE", "  site  evil\\n\\x1b[2J"]


def test_peer_identity_as_the_ike_sa_shows_it() -> None:
    sa = Pair(*configs()).i
    assert sa is not None
    assert sa.id_str(IdiPayload(IdType.FQDN, b"evil\nWARNING forged\x1b[0m")) == (
        "evil\\nWARNING forged\\x1b[0m"
    )
    assert sa.id_str(IdiPayload(IdType.RFC822_ADDR, b"a@b\xff")) == "a@b\\xff"


def test_names_in_certificates_and_dns() -> None:
    now = dt.datetime.now(dt.UTC)
    key = generate_key()
    ca = build_ca(key, now=now)
    cert = issue_cert(ca, key, key.public_key(), Identity.parse("gw.example.test"), now=now)
    evil = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw\n\x1b[2Jforged")])
    evil_cert = x509.CertificateBuilder(
        issuer_name=cert.issuer, subject_name=evil, public_key=cert.public_key(),
        serial_number=7, not_valid_before=now, not_valid_after=now + dt.timedelta(days=1),
    ).sign(key, hashes.SHA256())  # type: ignore[arg-type]  # fmt: skip
    assert describe(evil_cert) == '"CN=gw\\n\\x1b[2Jforged" (serial 7)'
    assert str(Identity.from_name(evil)) == "CN=gw\\n\\x1b[2Jforged"
