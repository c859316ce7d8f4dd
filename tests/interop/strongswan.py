"""Run strongSwan's charon, driven by swanctl, inside a test namespace.

This is the peer for espfast's interop tests (and the ``strongswan-libipsec`` benchmark
tunnel). It runs Debian 12's charon (strongswan-charon, strongswan-swanctl,
libcharon-extra-plugins, strongSwan 5.9.8) with its userspace ESP, because this kernel
has no ESP/XFRM.

How charon is made an IKEv2 peer for espfast
============================================

Plugins (``charon.load``, with ``load_modular = no`` so /etc/strongswan.d is ignored):
``random nonce openssl pem pkcs1 pkcs8 x509 pubkey revocation constraints kdf
eap-identity eap-mschapv2 eap-tls kernel-libipsec kernel-netlink socket-default vici``
(:data:`CHARON_PLUGINS`). eap-mschapv2 is in Debian's libcharon-extauth-plugins; its MD4
and DES come from the openssl plugin, which loads OpenSSL 3's legacy provider. eap-tls
(and its libtls) is in libcharon-extra-plugins.

- ``kernel-libipsec`` is the IPsec backend: at start it creates a TUN device
  (``ipsec0``, MTU 1400) and does ESP in userspace (libipsec). It must come before
  ``kernel-netlink`` in the list so that it, not XFRM, provides the ``kernel-ipsec``
  interface (see below). ``kernel-netlink`` is still needed, for addresses and routes only (it
  never touches XFRM then): for each installed Child SA charon adds a route for the
  remote traffic selector via ``ipsec0`` into table 220 (rule priority 220), with
  ``src`` set to a local address inside the local traffic selector if the host has
  one. So give the namespace an address inside local_ts (e.g. 198.19.1.1/32 on lo):
  without one charon logs ``error installing route with policy ...`` and ``unable to
  install IPsec policies (SPD) in kernel``, and refuses the Child SA with
  TS_UNACCEPTABLE (the IKE SA stays up) — in either role.
- libipsec only sends ESP inside UDP (RFC 3948) on charon's IKE socket, port 4500, so
  every connection needs ``encap = yes``: charon then fakes NAT detection (its
  NAT_DETECTION_SOURCE_IP is bogus), both ends see "NAT" and move to 4500 after
  IKE_SA_INIT, and ESP goes in UDP/4500 — exactly what espfast's dataplane expects.
  This holds in both roles; set it on the responder too.
- libipsec has no extended sequence numbers: a Child SA that negotiated ESN fails to
  install (``IPsec SA: ESN not supported``, ``failed to create SAD entry``) and the
  responder answers NO_PROPOSAL_CHOSEN — also with ``-esn-noesn``, where charon picks
  ESN first. Configure charon's ``esp_proposals`` without ``-esn`` (no ESN is the
  default); it then proposes, and accepts, 32-bit sequence numbers only.
- The plugin order matters: with ``kernel-netlink`` first, XFRM is the backend and
  every Child SA fails (``unable to add SAD entry``).
  ESP interop verified with espfast's dataplane (test_esp_libipsec.py): AES-GCM-16
  128/256, ChaCha20-Poly1305, AES-CBC 128/256 with HMAC-SHA2-256/512.
- ``openssl`` provides every algorithm espfast speaks (AES-GCM, AES-CBC, HMAC-SHA2,
  ChaCha20-Poly1305, MODP, ECP, x25519/x448, RSA/ECDSA/Ed25519); ``kdf`` provides prf+.
- ``vici`` is the control socket; each instance gets its own path
  (``charon.plugins.vici.socket``), and swanctl is pointed at it with ``--uri``.

Isolation: charon's pid file is compiled in as /var/run/charon.pid, so each instance
runs in a private mount namespace (``unshare --mount``) with the instance's own
directory bind-mounted over /run. Its strongswan.conf comes from ``STRONGSWAN_CONF``,
its swanctl directory from ``SWANCTL_DIR``, its log goes to ``charon.log`` in the
work directory (``filelog``, flushed per line). Two instances (one per namespace) run
side by side. Charon is stopped by its PID (the PID that :meth:`Namespace.popen`
returned: ``ip netns exec``, ``unshare`` and ``sh`` all exec into charon).

Connections (``swanctl.conf``, rendered by :class:`Connection`)::

    connections {
      peer {
        version = 2
        local_addrs = 198.18.0.1          # outer addresses
        remote_addrs = 198.18.0.2
        encap = yes                       # mandatory with kernel-libipsec
        proposals = aes128gcm16-prfsha256-x25519    # IKE, strongSwan keyword syntax
        local { auth = psk ... }          # or auth = pubkey, certs = a.pem
        remote { auth = psk ... }         # or auth = pubkey (+ cacerts = ca.pem)
        children {
          net {
            local_ts = 198.19.1.0/24
            remote_ts = 198.19.2.0/24
            esp_proposals = aes128gcm16   # ESP (no -esn: see above); add a DH group for PFS
            start_action = none           # the test calls initiate(); "trap" and
          }                               # "start" also work
        }
      }
    }

PSK: a ``secrets { ike-1 { id-1 = ...; id-2 = ...; secret = 0s<base64> } }`` section
(:class:`Psk`); list both identities, or none for a secret that matches any.

Certificates: files in the swanctl directory (:meth:`Charon.start` ``files=``):
``x509/`` our end-entity certificate (PEM or DER; referenced by ``certs =``),
``x509ca/`` trusted CA certificates (all are loaded; ``cacerts =`` pins one),
``private/`` our private key (PEM PKCS#8 or traditional; ``rsa/`` and ``ecdsa/`` also
work), ``x509crl/`` CRLs. Use ``auth = pubkey``; charon signs with RFC 7427 digital
signatures when the peer sent SIGNATURE_HASH_ALGORITHMS, else with the classic
method (RSA = 1, ECDSA = 9/10/11). To force the classic methods even when the peer
announces RFC 7427, set ``charon.signature_authentication = no`` (``settings=``).
charon's log names the method it used: ``authentication of 'a.peer.test' (myself) with
ECDSA_WITH_SHA256_DER successful`` (RFC 7427) or ``... with RSA signature successful``
(classic). The identity should be a SAN of the certificate (``id = a.peer.test`` with a
DNS SAN), or the full subject DN. bench/tunnels/peerutil.py (``new_key``, ``issue``,
``cert_pem``, ``key_pem``) makes throw-away CAs and certificates; test_harness.py's
``test_certificate_tunnel`` is a worked example of the file layout.

Proposal mismatch: give charon e.g. ``proposals = aes256-sha384-ecp384`` against a peer
that offers only AES-GCM/x25519: the responder logs ``received proposals: IKE:...``,
``configured proposals: IKE:...`` and ``received proposals unacceptable``, and answers
IKE_SA_INIT with N(NO_PROP); the initiating charon logs ``received NO_PROPOSAL_CHOSEN
notify error`` and ``swanctl --initiate`` fails (:class:`CharonError`).

API (:class:`Charon`): ``start`` (writes the config, starts charon, ``--load-all``),
``initiate``, ``rekey``, ``terminate``, ``list_sas`` (vici, as str dicts),
``installed_children``, ``wait_child`` and ``wait_log`` (bounded waits), ``child_keys``
(with ``log_levels={"chd": 4}``), ``kill`` (SIGKILL, no DELETE sent), ``log`` (also
attached to a failing test's report by tests/interop/conftest.py), ``stop`` (by PID);
for the handshake benchmark ``handshake_times`` and ``handshake_rate`` (in-process
vici; see bench/charon_handshake.py, which also lifts a charon responder's per-IP
half-open and cookie thresholds: ``block_threshold``, ``cookie_threshold``,
``cookie_threshold_ip``).
Traffic selectors may list IPv4 and IPv6 prefixes together
(``local_ts = 198.19.1.0/24,2001:2:0:1::/64``); libipsec carries both.

Where it is used: test_harness.py (charon <-> charon: the harness itself),
test_esp_libipsec.py (espfast's dataplane <-> libipsec ESP with charon's keys),
test_ike_charon.py (espfast.control <-> charon over UDP, through ike_driver.py: PSK
with three proposal families, ECDSA/RSA certificates, INVALID_KE_PAYLOAD retry, Child SA
rekeys from both ends, DELETE, proposal mismatch, an RSA-3072 chain with an
intermediate CA crossing as RFC 7383 fragments — either side initiating).

Example (see tests/interop/test_harness.py)::

    conf_a, conf_b = psk_pair((hosts.addr_a, hosts.addr_b), psk, (ts_a, ts_b))
    with Charon.start(hosts.a, dir_a, conf_a) as a, Charon.start(hosts.b, dir_b, conf_b):
        a.initiate("net")
        a.wait_child("net", timeout=10)
"""

from __future__ import annotations

import base64
import contextlib
import re
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import vici  # type: ignore[import-untyped]
import vici.exception  # type: ignore[import-untyped]

from espfast.netns import Namespace

CHARON = "/usr/lib/ipsec/charon"
SWANCTL = "swanctl"

# kernel-libipsec before kernel-netlink: the first kernel-ipsec provider wins.
CHARON_PLUGINS = (
    "random nonce openssl pem pkcs1 pkcs8 x509 pubkey revocation constraints kdf "
    "eap-identity eap-mschapv2 eap-tls "
    "kernel-libipsec kernel-netlink socket-default vici"
)
SWANCTL_PLUGINS = "pem pkcs1 pkcs8 x509 openssl"

START_TIMEOUT = 10.0
# What swanctl --load-all reads from its directory (all created, even if empty).
SWANCTL_SUBDIRS = (
    "x509", "x509ca", "x509ocsp", "x509aa", "x509ac", "x509crl",
    "pubkey", "private", "rsa", "ecdsa", "bliss", "pkcs8", "pkcs12",
)  # fmt: skip


class CharonError(RuntimeError):
    """charon did not start, or a swanctl/vici command failed; carries the log tail."""


@dataclass(frozen=True)
class Psk:
    """An IKE pre-shared key for two identities (``secrets { ike-x { ... } }``)."""

    ids: tuple[str, ...]
    secret: bytes = field(repr=False)

    def render(self, name: str) -> str:
        lines = [f"  {name} {{"]
        lines += [f"    id-{i} = {ident}" for i, ident in enumerate(self.ids, 1)]
        lines.append(f"    secret = 0s{base64.b64encode(self.secret).decode()}")
        lines.append("  }")
        return "\n".join(lines)


@dataclass(frozen=True)
class Connection:
    """One IKEv2 connection with one child, as swanctl.conf text.

    ``auth`` is ``psk`` or ``pubkey``; with ``pubkey``, ``local_cert`` names a file in
    the swanctl directory's x509/ and ``remote_ca`` (optional) one in x509ca/.
    ``extra`` adds raw ``key = value`` lines to the connection section, ``child_extra``
    to the child section.
    """

    local_addrs: str
    remote_addrs: str
    local_id: str
    remote_id: str
    local_ts: str
    remote_ts: str
    name: str = "peer"
    child: str = "net"
    auth: str = "psk"
    local_cert: str | None = None
    remote_ca: str | None = None
    proposals: str = "aes128gcm16-prfsha256-x25519"
    esp_proposals: str = "aes128gcm16"
    start_action: str = "none"
    extra: Mapping[str, str] = field(default_factory=dict)
    child_extra: Mapping[str, str] = field(default_factory=dict)

    def render(self) -> str:
        if self.auth not in ("psk", "pubkey"):
            raise ValueError(f"auth must be psk or pubkey, not {self.auth!r}")
        local = [f"auth = {self.auth}", f"id = {self.local_id}"]
        if self.local_cert is not None:
            local.append(f"certs = {self.local_cert}")
        remote = [f"auth = {self.auth}", f"id = {self.remote_id}"]
        if self.remote_ca is not None:
            remote.append(f"cacerts = {self.remote_ca}")
        conn = {
            "version": "2",
            "local_addrs": self.local_addrs,
            "remote_addrs": self.remote_addrs,
            "encap": "yes",
            "proposals": self.proposals,
            **self.extra,
        }
        child = {
            "local_ts": self.local_ts,
            "remote_ts": self.remote_ts,
            "esp_proposals": self.esp_proposals,
            "start_action": self.start_action,
            **self.child_extra,
        }
        out = [f"  {self.name} {{"]
        out += [f"    {k} = {v}" for k, v in conn.items()]
        out += ["    local {", *(f"      {line}" for line in local), "    }"]
        out += ["    remote {", *(f"      {line}" for line in remote), "    }"]
        out += ["    children {", f"      {self.child} {{"]
        out += [f"        {k} = {v}" for k, v in child.items()]
        out += ["      }", "    }", "  }"]
        return "\n".join(out)


def same_ike_sa(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    """Whether two :meth:`Charon.list_sas` entries are one IKE SA (not a new one, not a
    rekeyed one): the same unique id and SPIs."""
    keys = ("uniqueid", "initiator-spi", "responder-spi")
    return all(before[k] == after[k] for k in keys)


def swanctl_conf(connections: Sequence[Connection], secrets: Sequence[Psk] = ()) -> str:
    """A complete swanctl.conf for ``connections`` and IKE ``secrets``."""
    parts = ["connections {", *(c.render() for c in connections), "}"]
    if secrets:
        parts += ["secrets {", *(s.render(f"ike-{i}") for i, s in enumerate(secrets, 1)), "}"]
    return "\n".join(parts) + "\n"


def psk_pair(
    addrs: tuple[str, str], psk: Psk, ts: tuple[str, str], **options: Any
) -> tuple[str, str]:
    """swanctl.conf for both ends (a, b) of one PSK tunnel: ``addrs``, ``psk.ids`` and
    ``ts`` are (a's, b's); ``options`` go to both :class:`Connection` objects."""
    confs = []
    for me, peer in ((0, 1), (1, 0)):
        conn = Connection(
            local_addrs=addrs[me],
            remote_addrs=addrs[peer],
            local_id=psk.ids[me],
            remote_id=psk.ids[peer],
            local_ts=ts[me],
            remote_ts=ts[peer],
            **options,
        )
        confs.append(swanctl_conf([conn], [psk]))
    return confs[0], confs[1]


def strongswan_conf(
    workdir: Path,
    settings: Mapping[str, str],
    log_level: int,
    log_levels: Mapping[str, int] | None = None,
) -> str:
    """strongswan.conf for one instance: fixed plugin list, log file, vici socket.
    ``log_levels`` sets subsystems (``chd``, ``ike``, ``knl``, ...) apart from the rest."""
    extra = "\n".join(f"  {k} = {v}" for k, v in settings.items())
    levels = "".join(f"\n      {k} = {v}" for k, v in (log_levels or {}).items())
    return f"""\
charon {{
  load_modular = no
  load = {CHARON_PLUGINS}
{extra}
  filelog {{
    charonlog {{
      path = {workdir / "charon.log"}
      time_format = %H:%M:%S
      default = {log_level}{levels}
      flush_line = yes
    }}
  }}
  syslog {{
  }}
  plugins {{
    vici {{
      socket = unix://{workdir / "charon.vici"}
    }}
  }}
}}
swanctl {{
  load = {SWANCTL_PLUGINS}
}}
"""


def _text(value: Any) -> Any:
    """vici answers with bytes; turn a nested answer into str/dict/list."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, Mapping):
        return {str(k): _text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_text(v) for v in value]
    return value


class Charon:
    """One running charon in ``ns`` with its own config, sockets, pid file and log."""

    def __init__(self, ns: Namespace, workdir: Path, proc: subprocess.Popen[bytes]) -> None:
        self.ns = ns
        self.workdir = workdir
        self.proc = proc
        self.log_path = workdir / "charon.log"
        self.vici_path = workdir / "charon.vici"
        self.swanctl_dir = workdir / "swanctl"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    def start(
        cls,
        ns: Namespace,
        workdir: Path,
        conf: str,
        *,
        files: Mapping[str, bytes] | None = None,
        settings: Mapping[str, str] | None = None,
        log_level: int = 1,
        log_levels: Mapping[str, int] | None = None,
        load: bool = True,
    ) -> Charon:
        """Write the config into ``workdir``, start charon, wait until vici answers and
        (with ``load``) ``swanctl --load-all``. Use it as a context manager to stop it.

        ``conf`` is swanctl.conf text (see :func:`swanctl_conf`); ``files`` maps paths
        relative to the swanctl directory (``x509/a.pem``, ``private/a.key``, ...) to
        their content; ``settings`` are extra ``charon.<key> = value`` lines;
        ``log_level`` is the log's default level, ``log_levels`` per subsystem (level 4
        of ``chd`` logs the Child SA keys: only for tests that need them).
        """
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "run").mkdir(exist_ok=True)
        swanctl_dir = (workdir / "swanctl").resolve()
        for sub in SWANCTL_SUBDIRS:
            (swanctl_dir / sub).mkdir(parents=True, exist_ok=True)
        (swanctl_dir / "swanctl.conf").write_text(conf)
        for rel, data in (files or {}).items():
            path = swanctl_dir / rel
            if swanctl_dir not in path.resolve().parents:
                raise ValueError(f"file {rel!r} is outside the swanctl directory")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            path.chmod(0o600)
        conf_path = workdir / "strongswan.conf"
        conf_path.write_text(strongswan_conf(workdir, settings or {}, log_level, log_levels))
        with (workdir / "charon.stdout").open("wb") as out:
            proc = ns.popen(
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                'mount --bind "$1" /run && exec "$2"',
                "sh",
                str(workdir / "run"),
                CHARON,
                env={"STRONGSWAN_CONF": str(conf_path), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        charon = cls(ns, workdir, proc)
        try:
            charon._wait_started(START_TIMEOUT)
            if load:
                charon.load_all()
        except BaseException:
            charon.stop()
            raise
        return charon

    def _wait_started(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CharonError(f"charon exited with {self.proc.returncode}\n{self.log()}")
            if self.vici_path.exists():
                with contextlib.suppress(OSError), self._socket():
                    return
            time.sleep(0.05)
        raise CharonError(f"charon's vici socket did not appear in {timeout}s\n{self.log()}")

    def _socket(self) -> socket.socket:
        """A connected vici socket; retried while charon's listen backlog is full."""
        deadline = time.monotonic() + 10.0
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(10.0)
            try:
                sock.connect(str(self.vici_path))
                return sock
            except BlockingIOError:
                sock.close()
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)
            except BaseException:
                sock.close()
                raise

    def log(self, tail: int | None = 200) -> str:
        """charon's log (the last ``tail`` lines; all with None) and its stdout."""
        text = ""
        for name in ("charon.stdout", "charon.log"):
            path = self.workdir / name
            if path.exists():
                text += path.read_text(errors="replace")
        lines = text.splitlines()
        if tail is not None:
            lines = lines[-tail:]
        return "\n".join(lines)

    def swanctl(self, *args: str, timeout: float = 30.0) -> str:
        """Run ``swanctl ARGS`` against this instance; returns its output."""
        argv = [SWANCTL, *args, "--uri", f"unix://{self.vici_path}"]
        env = {
            "STRONGSWAN_CONF": str(self.workdir / "strongswan.conf"),
            "SWANCTL_DIR": str(self.swanctl_dir),
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        }
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
        out = proc.stdout + proc.stderr
        if proc.returncode != 0:
            raise CharonError(
                f"{' '.join(argv)} exited {proc.returncode}:\n{out}\n--- charon log ---\n"
                + self.log(60)
            )
        return out

    def load_all(self) -> str:
        """``swanctl --load-all``: connections, secrets and credentials from the dir.

        swanctl exits 0 even when swanctl.conf does not parse; any line that says
        something went wrong is an error here."""
        out = self.swanctl("--load-all", "--noprompt")
        bad = [
            line
            for line in out.splitlines()
            if any(word in line.lower() for word in ("invalid", "failed", "error"))
        ]
        if bad:
            raise CharonError("swanctl --load-all: " + "\n".join(bad) + "\n" + out)
        return out

    def initiate(self, child: str, ike: str | None = None, timeout: float = 15.0) -> str:
        """Initiate ``child`` (and its IKE SA); blocks until done, raises on failure."""
        args = ["--initiate", "--child", child, "--timeout", str(int(timeout))]
        if ike is not None:
            args += ["--ike", ike]
        return self.swanctl(*args, timeout=timeout + 5)

    def terminate(self, ike: str, timeout: float = 15.0) -> str:
        return self.swanctl(
            "--terminate", "--ike", ike, "--timeout", str(int(timeout)), timeout=timeout + 5
        )

    def rekey(self, child: str, timeout: float = 15.0) -> str:
        """Rekey the Child SA named ``child`` (CREATE_CHILD_SA); returns at once."""
        return self.swanctl("--rekey", "--child", child, timeout=timeout)

    def wait_log(self, text: str, timeout: float = 15.0) -> str:
        """Wait (bounded) until a log line contains ``text``; returns that line."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log(None).splitlines():
                if text in line:
                    return line
            if time.monotonic() >= deadline:
                raise CharonError(f"no log line with {text!r} after {timeout}s\n{self.log()}")
            time.sleep(0.1)

    def _vici(self, session: vici.Session, command: str, args: Mapping[str, Any]) -> None:
        """One streamed vici command (initiate/terminate), its log events drained."""
        try:
            for _ in session.streamed_request(command, "control-log", dict(args)):
                pass
        except vici.exception.CommandException as exc:
            raise CharonError(f"vici {command} {dict(args)}: {exc}\n{self.log(40)}") from exc

    def handshake_times(self, ike: str, child: str, count: int) -> list[float]:
        """Establish IKE SA ``ike`` with its first Child SA ``child`` ``count`` times in
        a row, in-process through vici (no swanctl start-up in the figure), deleting
        the IKE SA after each; returns the seconds each establishment took."""
        times = []
        with self._socket() as sock:
            session = vici.Session(sock)
            for _ in range(count):
                start = time.perf_counter()
                self._vici(session, "initiate", {"ike": ike, "child": child, "timeout": 10000})
                times.append(time.perf_counter() - start)
                self._vici(session, "terminate", {"ike": ike, "timeout": 10000})
        return times

    def handshake_rate(self, pairs: Sequence[tuple[str, str]]) -> float:
        """Establish every (ike, child) in ``pairs`` at once (one vici session and
        thread each) and return IKE+Child SAs per second; terminates them afterwards.
        Each pair must be its own connection with its own local identity: charon
        reuses an IKE SA of an equal connection and then refuses the duplicate child.
        Every waiting initiate holds one of charon's worker threads (16 by default):
        start this charon with ``settings={"threads": ...}`` above ``len(pairs) + 8``."""
        errors: list[BaseException] = []
        socks = [self._socket() for _ in pairs]

        def one(sock: socket.socket, ike: str, child: str) -> None:
            try:
                args = {"ike": ike, "child": child, "timeout": 20000}
                self._vici(vici.Session(sock), "initiate", args)
            except BaseException as exc:  # reported below, in the caller's thread
                errors.append(exc)

        threads = [
            threading.Thread(target=one, args=(sock, *pair))
            for sock, pair in zip(socks, pairs, strict=True)
        ]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        elapsed = time.perf_counter() - start
        for sock in socks:
            sock.close()
        with self._socket() as sock:
            session = vici.Session(sock)
            for ike, _ in pairs:
                with contextlib.suppress(CharonError):
                    self._vici(session, "terminate", {"ike": ike, "timeout": 10000})
        if errors:
            raise CharonError(f"{len(errors)} of {len(pairs)} handshakes failed: {errors[0]}")
        return len(pairs) / elapsed

    def list_sas(self) -> list[dict[str, Any]]:
        """IKE SAs as vici reports them: one dict per IKE SA, with ``name`` added and
        ``child-sas`` a dict of children (each has ``name``, ``state``, ``spi-in`` ...)."""
        with self._socket() as sock:
            session = vici.Session(sock)
            result = []
            for entry in session.list_sas():
                for name, sa in _text(entry).items():
                    result.append({"name": name, **sa})
            return result

    def established_ike(self) -> dict[str, Any]:
        """The one ESTABLISHED IKE SA (CharonError if there is not exactly one)."""
        found = [sa for sa in self.list_sas() if sa.get("state") == "ESTABLISHED"]
        if len(found) != 1:
            raise CharonError(f"{len(found)} established IKE SAs: {found}\n{self.log(40)}")
        return found[0]

    def installed_children(self, child: str) -> list[dict[str, Any]]:
        out = []
        for ike in self.list_sas():
            if ike.get("state") != "ESTABLISHED":
                continue
            for sa in ike.get("child-sas", {}).values():
                if sa.get("name") == child and sa.get("state") == "INSTALLED":
                    out.append(sa)
        return out

    def wait_child(self, child: str, timeout: float = 15.0) -> dict[str, Any]:
        """Wait (bounded) until a Child SA named ``child`` is INSTALLED; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise CharonError(f"charon exited with {self.proc.returncode}\n{self.log()}")
            found = self.installed_children(child)
            if found:
                return found[0]
            if time.monotonic() >= deadline:
                raise CharonError(f"no INSTALLED child {child!r} after {timeout}s\n{self.log()}")
            time.sleep(0.1)

    def child_keys(self) -> dict[str, bytes]:
        """The Child SA keys charon logged (``log_levels={"chd": 4}``), by name:
        ``encryption initiator``, ``encryption responder``, ``integrity initiator``,
        ``integrity responder`` — the last Child SA's, as KEYMAT gives them (AEADs:
        key || salt). For tests that hand an SA charon negotiated to another peer."""
        keys: dict[str, bytes] = {}
        name, want, data, thread = "", 0, b"", ""
        for line in self.log(None).splitlines():
            head = re.search(r" (\d+)\[CHD\] (encryption|integrity) (initiator|responder) "
                             r"key => (\d+) bytes", line)  # fmt: skip
            if head:
                thread, name = head[1], f"{head[2]} {head[3]}"
                want, data = int(head[4]), b""
                continue
            row = re.search(rf" {thread}\[CHD\]\s+\d+: (.*)", line) if want else None
            if row:
                data += bytes.fromhex(row[1].split("  ")[0])
                if len(data) >= want:
                    keys[name], want = data[:want], 0
        return keys

    def kill(self) -> int:
        """SIGKILL charon by its PID: it sends no DELETE, so its peer keeps the SAs."""
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait(5.0)

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM charon by its PID (SIGKILL after ``timeout``); returns its status."""
        return self.ns.stop(self.proc, timeout)

    def __enter__(self) -> Charon:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
