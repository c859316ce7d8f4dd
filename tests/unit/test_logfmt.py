"""espfast/logfmt.py: one line per log record, as text or as a JSON object, whatever
the message holds."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from espfast import logfmt
from espfast.cli import build_parser


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """A stream to log to; the root logger as it was afterwards (pytest's handlers)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield io.StringIO()
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def test_json_lines_have_event_and_fields(stream: io.StringIO) -> None:
    logfmt.configure(logging.INFO, "json", stream)
    log = logging.getLogger("espfast.test")
    log.info("%s: child SA up", "site", extra=logfmt.event("child_sa_up", child="site",
             spi_in="c0000001", remote_ts=("198.19.2.0/24",), ike_sa=3))  # fmt: skip
    log.debug("not at INFO")
    log.warning("plain")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = map(json.loads, lines)
    assert first["event"] == "child_sa_up" and first["level"] == "INFO"
    assert first["logger"] == "espfast.test" and first["message"] == "site: child SA up"
    assert first["fields"] == {"child": "site", "spi_in": "c0000001",
                               "remote_ts": ["198.19.2.0/24"], "ike_sa": 3}  # fmt: skip
    assert first["time"].endswith("Z") and first["time"][10] == "T"
    assert (second["event"], second["fields"]) == ("log", {})


def test_peer_strings_cannot_break_lines(stream: io.StringIO) -> None:
    """A newline or an escape sequence in a logged value (an identity a peer chose) stays
    inside its one line, in both formats."""
    hostile = "evil\n2026-01-01 INFO espfast.daemon: fake line\x1b[2J\x85"
    for fmt in logfmt.FORMATS:
        stream.seek(0)
        stream.truncate()
        logfmt.configure(logging.INFO, fmt, stream)
        log = logging.getLogger("espfast.test")
        log.info("peer %s", hostile, extra=logfmt.event("x", remote_id=hostile))
        text = stream.getvalue()
        assert text.count("\n") == 1 and "\x1b" not in text and "\x85" not in text, text
        if fmt == "json":
            assert json.loads(text)["fields"]["remote_id"] == hostile
        else:
            assert "evil\\n2026" in text and "\\x1b[2J\\x85" in text


def test_exceptions_stay_with_their_record(stream: io.StringIO) -> None:
    logfmt.configure(logging.INFO, "json", stream)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("espfast.test").exception("failed")
    (line,) = stream.getvalue().splitlines()
    doc = json.loads(line)
    assert "RuntimeError: boom" in doc["exception"]


def test_log_format_option_before_or_after_the_command() -> None:
    parser = build_parser()
    assert parser.parse_args(["--log-format", "json", "status"]).log_format == "json"
    assert parser.parse_args(["status", "--log-format", "json"]).log_format == "json"
    assert parser.parse_args(["status"]).log_format == "text"
    with pytest.raises(ValueError, match="log format"):
        logfmt.configure(logging.INFO, "xml")
