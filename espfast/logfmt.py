"""Log lines for people and for log shippers: one line per event, text or JSON.

``espfast --log-format text`` (the default) writes ``TIME LEVEL LOGGER: MESSAGE``;
``--log-format json`` writes one JSON object per line::

    {"time": "2026-12-03T15:04:05.123Z", "level": "INFO", "event": "child_sa_up",
     "logger": "espfast.daemon", "message": "site: child SA up, ...",
     "fields": {"connection": "site", "child": "net", "spi_in": "c1a2b3c4", ...}}

``event`` names what happened (the list is in README.md, "Logs"); log calls that name no
event get ``"log"``. ``fields`` are the event's values, given by the log call with
``extra=event("child_sa_up", connection=..., ...)``. Both forms are one line whatever the
message holds: the text form escapes whatever is not printable (a newline as ``\\n``, ESC as
``\\x1b``: espfast.control.text.printable, the one escaping rule), a traceback included; the
JSON encoder escapes control characters itself. What a peer sent is escaped before it
reaches a log call (identities and notify data, by the control plane's escaping helper);
this module only keeps the line a line. Keys never reach a log call at all.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from espfast.control.text import printable

FORMATS = ("text", "json")
DEFAULT_EVENT = "log"


def event(name: str, **fields: object) -> dict[str, object]:
    """The ``extra`` of a log call that reports event ``name`` with its ``fields``."""
    return {"event": name, "fields": fields}


def _when(record: logging.LogRecord) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{stamp}.{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER: MESSAGE``: every record one line of printable text, whatever
    path a peer's bytes took into it (a traceback stays on the line too)."""

    def __init__(self, fmt: str = "%(asctime)s %(levelname)s %(name)s: %(message)s") -> None:
        super().__init__(fmt)

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, event, logger, message,
    fields (and ``exception`` with the traceback, when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        doc: dict[str, Any] = {
            "time": _when(record),
            "level": record.levelname,
            "event": str(getattr(record, "event", DEFAULT_EVENT)),
            "logger": record.name,
            "message": record.getMessage(),
            "fields": {k: _plain(v) for k, v in fields.items()}
            if isinstance(fields, Mapping)
            else {},
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=True, separators=(",", ":"))


def _plain(value: object) -> object:
    """A field as a JSON value: numbers, booleans, None and lists of them stay, anything
    else (an address, a selector, bytes never) is its ``str``."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return str(value)


def configure(level: int, fmt: str = "text", stream: TextIO | None = None) -> None:
    """Log to ``stream`` (stderr) at ``level`` in ``fmt`` (one of FORMATS)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
