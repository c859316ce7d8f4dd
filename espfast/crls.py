"""CRL files for ``espfast up``: read with the configuration, read again when they change.

A connection with ``crls = [...]`` gets a :class:`CrlFiles` for its trust store
(espfast.control.certs.TrustStore). :meth:`CrlFiles.poll` runs before each verification
of a peer's certificate (the ``refresh`` hook of espfast.control.auth.certificate_auth):
it looks at each file's device, inode, size and modification time, and reads the ones that
changed again (a stat per file: cheap next to the signature checks that follow). A file
that no longer reads or parses (deleted, half written, damaged, signed by the wrong key)
costs one log line per change and its previous content stays in force: a bad CRL update
never quietly lifts a revocation. Nothing here fetches anything from the network.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

from espfast.control.certs import TrustStore, read_file

log = logging.getLogger(__name__)

Stamp = tuple[int, int, int, int] | None  # (st_dev, st_ino, st_size, st_mtime_ns); None: gone


def _stamp(path: Path) -> Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class CrlFiles:
    """The CRL files of one trust store (see the module docstring)."""

    def __init__(self, paths: Sequence[Path], trust: TrustStore) -> None:
        self.paths = tuple(paths)
        self.trust = trust
        self._stamps: dict[Path, Stamp] = {}
        self._crls: dict[Path, x509.CertificateRevocationList] = {}
        self.reloads = 0  # files read again after a change
        self.reload_errors = 0  # changes that left the previous CRL in force

    def load(self) -> None:
        """Read every file (at startup); ValueError naming the file and the problem."""
        for path in self.paths:
            self._stamps[path] = _stamp(path)  # before reading: a later change is seen
            self._crls[path] = crl = self.trust.load_crl(read_file(path), str(path))
            _warn_if_stale(path, crl, self.trust.revocation)
        self.trust.set_crls(self._crls.values())

    def poll(self) -> None:
        """Read again the files that changed since they were last looked at."""
        changed = False
        for path in self.paths:
            stamp = _stamp(path)
            if stamp == self._stamps.get(path):
                continue
            self._stamps[path] = stamp
            try:
                crl = self.trust.load_crl(read_file(path), str(path))
            except ValueError as e:
                self.reload_errors += 1
                log.error("%s; the CRL read before stays in force", e)
                continue
            self._crls[path] = crl
            self.reloads += 1
            changed = True
            log.info("%s: CRL read again, %d revoked certificate(s)", path, len(crl))
            _warn_if_stale(path, crl, self.trust.revocation)
        if changed:
            self.trust.set_crls(self._crls.values())


def _warn_if_stale(path: Path, crl: x509.CertificateRevocationList, policy: str) -> None:
    until = crl.next_update_utc
    if until is not None and until >= dt.datetime.now(dt.UTC):
        return
    since = f"since {until:%Y-%m-%d %H:%M} UTC" if until else "(it has no nextUpdate)"
    effect = (
        "certificates of its CA are refused until it is renewed"
        if policy != "relaxed"
        else "certificates it does not list are accepted"
    )
    log.warning("%s: the CRL is stale %s: with revocation = %s, %s", path, since, policy, effect)
