"""Showing text that came from the network: one escaping rule for logs, status and errors.

A peer chooses its identity, the names in its certificate and parts of the errors we
report about it. Printed as they are, a ``\\n`` in them forges whole log lines and an ESC
sequence reaches the operator's terminal. :func:`printable` is the one place that makes
such text safe: every character that is not printable (C0 and C1 controls, DEL, line and
paragraph separators, bidirectional and other format characters, unassigned code points)
becomes a Python-style escape (``\\n``, ``\\x1b``, ``\\u202e``); everything else, backslash
included, stays as it is, so the result is readable and escaping twice changes nothing.
Bytes that are not UTF-8 become ``\\xNN`` the same way.
"""

from __future__ import annotations

_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    short = _SHORT.get(ch)
    if short is not None:
        return short
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str | bytes) -> str:
    """``text`` with every non-printable character escaped (see the module docstring)."""
    if isinstance(text, bytes | bytearray | memoryview):
        text = bytes(text).decode("utf-8", "backslashreplace")
    if text.isprintable():  # the common case: nothing to do
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)
