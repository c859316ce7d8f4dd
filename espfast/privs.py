"""Process hardening and least privilege for the daemons (``espfast up``, ``espfast static``).

What a running daemon needs from the kernel, once its config (keys, certificates) is read
and its control socket is bound:

- CAP_NET_ADMIN: create the TUN device (TUNSETIFF), set its MTU, addresses, link state
  and routes over rtnetlink (pyroute2), and force the UDP socket buffer sizes
  (SO_RCVBUFFORCE / SO_SNDBUFFORCE; without it the dataplane falls back to the sysctl
  maximum);
- CAP_NET_BIND_SERVICE: bind a UDP port below 1024 (IKE on 500), and only then;
- read/write access to /dev/net/tun (mode 0666 on a stock system; a container gets it with
  ``--device /dev/net/tun``).

Nothing else: so :func:`drop_privileges` runs before the TUN device is created and the
sockets are bound, while the process has a single thread (capabilities and uids are
per-thread state in Linux; every later thread, the dataplane's workers and the netlink
thread included, inherits the narrowed set). It keeps exactly the capabilities named,
in the effective and permitted sets, clears the inheritable and ambient sets, removes
every other capability from the bounding set (when it holds CAP_SETPCAP, as root does),
optionally switches to a service user (``user = "espfast"`` / ``--user``) keeping those
capabilities (PR_SET_KEEPCAPS), sets no_new_privs, and checks the result.

:func:`harden` (first thing, before any key is read): no core dumps (RLIMIT_CORE 0) and
not dumpable (PR_SET_DUMPABLE 0: no core, no ptrace attach by the same uid, /proc/PID/
files owned by root), so keys never reach a core file. The C dataplane also keeps the key
bytes it owns in MADV_DONTDUMP pages (csrc/keymem.c).

Why ctypes: Python's os module has setresuid/setgroups but neither prctl(2) nor
capget/capset(2), and PyPI has no well-kept binding (python-prctl and pyprctl have had no
release since 2020/2021; the libcap-ng bindings are Debian's python3-libcap-ng, which does
not install into a venv). The calls below are the raw, stable kernel ABI: prctl with
integer arguments and capset with the _LINUX_CAPABILITY_VERSION_3 structures.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import errno
import logging
import os
import pwd
import resource
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# linux/capability.h
CAP_SETGID, CAP_SETUID, CAP_SETPCAP = 6, 7, 8
CAP_NET_BIND_SERVICE, CAP_NET_ADMIN = 10, 12
CAP_NAMES = {CAP_NET_BIND_SERVICE: "CAP_NET_BIND_SERVICE", CAP_NET_ADMIN: "CAP_NET_ADMIN"}
_CAP_VERSION_3 = 0x20080522
# linux/prctl.h
PR_SET_DUMPABLE, PR_SET_KEEPCAPS = 4, 8
PR_CAPBSET_READ, PR_CAPBSET_DROP = 23, 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
PRIVILEGED_PORTS = 1024  # ports below this need CAP_NET_BIND_SERVICE


class PrivilegeError(RuntimeError):
    """Privileges could not be dropped as asked; the message says why (exit status 1)."""


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
_libc.prctl.restype = ctypes.c_int
_libc.capget.argtypes = [ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData)]
_libc.capset.argtypes = [ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData)]


def _prctl(option: int, arg2: int = 0, arg3: int = 0) -> int:
    result = int(_libc.prctl(option, arg2, arg3, 0, 0))
    if result < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"prctl({option}): {os.strerror(e)}")
    return result


@dataclass(frozen=True)
class CapSets:
    """The calling thread's capability sets, as bit masks (bit n = capability n)."""

    effective: int
    permitted: int
    inheritable: int


def get_caps() -> CapSets:
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    if _libc.capget(ctypes.byref(header), data) < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"capget: {os.strerror(e)}")
    return CapSets(*(getattr(data[0], f) | getattr(data[1], f) << 32
                     for f in ("effective", "permitted", "inheritable")))  # fmt: skip


def set_caps(caps: CapSets) -> None:
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    for f in ("effective", "permitted", "inheritable"):
        mask = getattr(caps, f)
        setattr(data[0], f, mask & 0xFFFFFFFF)
        setattr(data[1], f, mask >> 32)
    if _libc.capset(ctypes.byref(header), data) < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"capset: {os.strerror(e)}")


def mask(*caps: int) -> int:
    return sum(1 << c for c in set(caps))


def cap_names(bits: int) -> str:
    """``CAP_NET_ADMIN,CAP_NET_BIND_SERVICE`` (``cap_N`` for those we have no name for)."""
    names = [CAP_NAMES.get(c, f"cap_{c}") for c in range(64) if bits >> c & 1]
    return ",".join(names) or "none"


def last_cap() -> int:
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return 40  # CAP_CHECKPOINT_RESTORE, the last one Linux 6.x knows


def harden() -> None:
    """No core dumps and not dumpable (see the module docstring). Call before reading keys."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _prctl(PR_SET_DUMPABLE, 0)


def needed_caps(*ports: int) -> tuple[int, ...]:
    """What a daemon bound to ``ports`` (UDP) needs after setup."""
    caps = [CAP_NET_ADMIN]
    if any(0 < p < PRIVILEGED_PORTS for p in ports):
        caps.append(CAP_NET_BIND_SERVICE)
    return tuple(caps)


@dataclass(frozen=True)
class ServiceUser:
    """Who the daemon becomes: uid, primary gid, supplementary groups."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


def resolve_user(user: str) -> ServiceUser:
    """A user name, or a numeric uid (with or without a passwd entry: then gid = uid)."""
    try:
        pw = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        if not user.isdigit():
            raise PrivilegeError(f"no such user {user!r}") from None
        return ServiceUser(user, int(user), int(user), ())
    groups = tuple(sorted(set(os.getgrouplist(pw.pw_name, pw.pw_gid))))
    return ServiceUser(pw.pw_name, pw.pw_uid, pw.pw_gid, groups)


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def drop_privileges(keep: tuple[int, ...], user: ServiceUser | None = None) -> CapSets:
    """Keep only the capabilities ``keep`` (see the module docstring), as ``user`` if given.

    Raises :class:`PrivilegeError` when it cannot (more than one thread, no CAP_SETUID to
    change user); a capability in ``keep`` that the process does not have is not an error
    here: the step that needs it fails with its own message. Returns the sets it left.
    """
    if (n := _threads()) != 1:
        raise PrivilegeError(f"cannot drop privileges with {n} threads running (a bug)")
    have = get_caps()
    wanted = mask(*keep) & have.permitted
    if mask(*keep) & ~have.permitted:
        log.warning("running without %s (not granted)", cap_names(mask(*keep) & ~have.permitted))
    switch = user is not None and os.getresuid() != (user.uid,) * 3
    if user is not None and switch and not have.permitted >> CAP_SETUID & 1:
        raise PrivilegeError(
            f"cannot switch to user {user.name}: that needs root (CAP_SETUID and CAP_SETGID)"
        )
    try:
        # The bounding set first: dropping from it needs CAP_SETPCAP, which goes next.
        if have.effective >> CAP_SETPCAP & 1:
            for cap in range(last_cap() + 1):
                if not (wanted >> cap & 1) and _prctl(PR_CAPBSET_READ, cap) == 1:
                    _prctl(PR_CAPBSET_DROP, cap)
        _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
        if user is not None and switch:
            os.setgroups(list(user.groups))
            os.setresgid(user.gid, user.gid, user.gid)
            _prctl(PR_SET_KEEPCAPS, 1)  # keep the permitted set across setresuid
            os.setresuid(user.uid, user.uid, user.uid)
            _prctl(PR_SET_KEEPCAPS, 0)
        set_caps(CapSets(effective=wanted, permitted=wanted, inheritable=0))
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        _prctl(PR_SET_DUMPABLE, 0)  # a uid change resets it to the suid_dumpable sysctl
    except OSError as e:
        raise PrivilegeError(f"cannot drop privileges: {e.strerror or e}") from None
    left = get_caps()
    if left.permitted != wanted or left.effective != wanted or left.inheritable:
        raise PrivilegeError(f"capabilities left after dropping: {cap_names(left.permitted)}")
    if user is not None and switch:
        _check_no_way_back(user)
    log.info("privileges dropped: uid %d, capabilities %s", os.getuid(), cap_names(wanted))
    return left


def _check_no_way_back(user: ServiceUser) -> None:
    if os.getresuid() != (user.uid,) * 3 or os.getresgid() != (user.gid,) * 3:
        raise PrivilegeError(f"the switch to user {user.name} did not take")
    if user.uid != 0:
        try:
            os.setuid(0)
        except PermissionError:
            return
        raise PrivilegeError("could regain uid 0 after dropping privileges")


def bounding_set() -> int:
    """The bounding set as a bit mask (PR_CAPBSET_READ for each capability)."""
    bits = 0
    for cap in range(last_cap() + 1):
        try:
            if _prctl(PR_CAPBSET_READ, cap) == 1:
                bits |= 1 << cap
        except OSError as e:  # pragma: no cover - a capability this kernel does not know
            if e.errno != errno.EINVAL:
                raise
    return bits


def add_user_argument(parser: argparse.ArgumentParser) -> None:
    """``--user NAME`` for the daemons (overrides the config's ``[interface] user``)."""
    parser.add_argument(
        "--user",
        metavar="NAME",
        help="run as this user (name or uid) once the control socket is bound, keeping only "
        "CAP_NET_ADMIN (and CAP_NET_BIND_SERVICE for a port below 1024); default: the "
        "config's [interface] user, else stay who we are with only those capabilities",
    )


def drop_for_daemon(user: str | None, *ports: int) -> CapSets:
    """The daemons' drop: :func:`needed_caps` for ``ports``, as ``user`` (a name or uid)."""
    return drop_privileges(needed_caps(*ports), resolve_user(user) if user else None)
