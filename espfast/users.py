"""The local EAP user file: one user per line, ``name:NT-hash`` (32 hex digits, the MD4
of the UTF-16LE password as MS-CHAPv2 needs it). No plaintext password is ever stored.

Like an ssh private key, the file must be readable by its owner only: it is refused when
its group or others may read or write it. ``#`` starts a comment line. Names are the EAP
identities users type (``carol``, ``DOMAIN\\carol``, ``carol@example.org``); a name may
hold colons (the hash follows the last one), but no whitespace or control characters.

``UserFile.lookup`` is what the gateway calls for each EAP-MSCHAPv2 authentication: it
re-reads the file when it changed (``espfast user add`` takes effect at once).
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import stat
import sys
import tempfile
from pathlib import Path

log = logging.getLogger("espfast.users")

DEFAULT_PATH = Path("/etc/espfast/users")
MAX_NAME = 255  # octets (an EAP identity we accept is no longer)
MAX_USERS_FILE = 4 << 20  # bytes: a file larger than this is a mistake


class UserFileError(Exception):
    """The user file is unsafe or malformed (the message names the file and the line)."""


def check_name(name: str) -> None:
    if not name or len(name.encode()) > MAX_NAME:
        raise UserFileError(f"user name must be 1 to {MAX_NAME} bytes")
    if any(c.isspace() or not c.isprintable() for c in name) or name.startswith("#"):
        raise UserFileError(f"user name {name!r}: no spaces, control characters or leading #")


def check_mode(path: Path) -> os.stat_result:
    """The file's status; UserFileError unless only its owner (root or us) may use it."""
    try:
        st = path.stat()
    except OSError as e:
        raise UserFileError(f"{path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UserFileError(f"{path}: not a regular file")
    if st.st_mode & 0o077:
        raise UserFileError(f"{path}: mode {stat.S_IMODE(st.st_mode):04o} lets others read or "
                            f"write it; chmod 600 {path}")  # fmt: skip
    if st.st_uid not in (0, os.geteuid()):
        raise UserFileError(f"{path}: owned by uid {st.st_uid}, not root or us")
    return st


def parse(text: str, source: str) -> dict[str, bytes]:
    users: dict[str, bytes] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, colon, digest = line.rpartition(":")
        try:
            if not colon:
                raise UserFileError("not name:NT-hash")
            check_name(name)
            if len(digest) != 32:
                raise UserFileError("the NT hash is 32 hex digits")
            nt_hash = bytes.fromhex(digest)
        except (UserFileError, ValueError) as e:
            reason = str(e) if isinstance(e, UserFileError) else "the NT hash is not hex"
            raise UserFileError(f"{source}:{n}: {reason}") from None
        if name in users:
            raise UserFileError(f"{source}:{n}: user {name!r} is listed twice")
        users[name] = nt_hash
    return users


def load(path: Path) -> dict[str, bytes]:
    """name -> NT hash; UserFileError if the file is unsafe or malformed."""
    st = check_mode(path)
    if st.st_size > MAX_USERS_FILE:
        raise UserFileError(f"{path}: larger than {MAX_USERS_FILE} bytes")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserFileError(f"{path}: {getattr(e, 'strerror', None) or 'not UTF-8'}") from None
    return parse(text, str(path))


def save(path: Path, users: dict[str, bytes]) -> None:
    """Write atomically with mode 0600 (a temporary file in the same directory, renamed)."""
    lines = ["# espfast EAP users: name:NT-hash (espfast user add|del|list)"]
    lines += [f"{name}:{h.hex()}" for name, h in users.items()]
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".users-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class UserFile:
    """The gateway's view: a lookup that follows changes to the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._users = load(path)  # refuse a bad file at startup
        self._stamp = self._stat_stamp()

    def _stat_stamp(self) -> tuple[int, ...] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode, st.st_uid)

    def lookup(self, name: str) -> bytes | None:
        """The NT hash of ``name``, or None. A changed file is re-read; one that became
        unsafe or malformed counts as empty until fixed (logged once per change)."""
        stamp = self._stat_stamp()
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._users = load(self.path)
            except UserFileError as e:
                log.error("EAP users: %s; refusing every user until it is fixed", e)
                self._users = {}
        return self._users.get(name)


# -- espfast user add|del|list ----------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--file", type=Path, default=DEFAULT_PATH,
                        help=f"the user file (default {DEFAULT_PATH})")  # fmt: skip
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="add a user or change its password (read from a "
                         "prompt, or one line of stdin; never from the command line)")  # fmt: skip
    add.add_argument("name")
    delete = sub.add_parser("del", help="remove a user")
    delete.add_argument("name")
    sub.add_parser("list", help="the user names (never their hashes)")


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise UserFileError("the passwords differ")
        password = first
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise UserFileError("empty password")
    return password


def run(args: argparse.Namespace) -> int:
    from espfast.control.eap import nt_password_hash

    path: Path = args.file
    try:
        users = load(path) if args.action != "add" or path.exists() else {}
        if args.action == "list":
            for name in users:
                print(name)
            return 0
        check_name(args.name)
        if args.action == "del":
            if users.pop(args.name, None) is None:
                raise UserFileError(f"{path}: no user {args.name!r}")
        else:
            users[args.name] = nt_password_hash(_read_password())
        save(path, users)
    except (UserFileError, OSError) as e:
        print(f"espfast user: {e}", file=sys.stderr)
        return 1
    return 0
