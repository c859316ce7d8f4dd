"""The control socket's place on disk: a directory nobody else can plant or swap things
in, the socket in it, and who may connect (espfast/ctl.py serves on it).

The directory is created 0700 (0750 with a group), owned by the daemon or its service user;
a pre-existing one must be a real directory owned by root, the daemon or the service user
and writable by nobody else, and so must every directory above it unless it is sticky
(like /tmp). A leftover socket another user owns is refused; a stale one of ours replaced.
"""

from __future__ import annotations

import errno
import grp
import os
import socket
import stat
from pathlib import Path

MAX_CLIENTS = 16  # connections served at once (espfast/ctl.py answers the rest with an error)


class ControlError(RuntimeError):
    """The control socket could not be used; the message is one line for the user."""


def resolve_group(name: str) -> int:
    """A group name or number (``--socket-group``); ControlError if there is no such group."""
    try:
        return int(name) if name.isdigit() else grp.getgrnam(name).gr_gid
    except KeyError:
        raise ControlError(f"no such group {name!r}") from None


def _check_ancestors(directory: Path, trusted: set[int]) -> None:
    """Every directory above ``directory`` must be owned by a trusted uid and writable by
    nobody else (or sticky, like /tmp: others cannot rename or remove what is ours)."""
    for parent in directory.parents:
        try:
            st = os.stat(parent)
        except FileNotFoundError:
            continue  # created by us below
        except OSError as e:
            raise ControlError(f"cannot check {parent}: {e.strerror}") from None
        if st.st_uid not in trusted:
            raise ControlError(f"{parent} is owned by uid {st.st_uid}; refusing to use it")
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            raise ControlError(f"{parent} is writable by other users; refusing to use it")


def _private_dir(directory: Path, owner: int | None, group: int | None) -> None:
    """The socket's directory: created 0700 (0750 with a group), owned by us or ``owner``;
    a pre-existing one must be a real directory owned by root, us or ``owner`` and
    writable by nobody else. Anything else (a symlink, a file, another user's directory)
    could let another user plant or impersonate the socket: one clear ControlError."""
    trusted = {0, os.geteuid()} | ({owner} if owner is not None else set())
    _check_ancestors(directory, trusted)
    created = False
    try:
        os.mkdir(directory, 0o750 if group is not None else 0o700)
        created = True
    except FileExistsError:
        pass
    except FileNotFoundError:  # its parent is missing too: created like it (then checked)
        try:
            os.makedirs(directory, 0o750 if group is not None else 0o700)
            created = True
        except OSError as e:
            raise ControlError(f"cannot create {directory}: {e.strerror}") from None
    except OSError as e:
        raise ControlError(f"cannot create {directory}: {e.strerror}") from None
    try:
        if stat.S_ISLNK(os.lstat(directory).st_mode):
            raise ControlError(f"{directory} is a symbolic link; refusing to use it")
        # O_NOFOLLOW: what is checked below is what was looked at above.
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        what = {errno.ELOOP: "is a symbolic link", errno.ENOTDIR: "is not a directory"}
        raise ControlError(
            f"{directory} {what.get(e.errno or 0, e.strerror)}; refusing to use it"
        ) from None
    try:
        st = os.fstat(fd)
        if st.st_uid not in trusted:
            raise ControlError(f"{directory} is owned by uid {st.st_uid}; refusing to use it")
        if created:
            os.fchown(fd, -1 if owner is None else owner, -1 if group is None else group)
            os.fchmod(fd, 0o750 if group is not None else 0o700)
        elif st.st_mode & 0o022:
            raise ControlError(f"{directory} is writable by other users; refusing to use it")
    finally:
        os.close(fd)


def bind_private(path: Path, owner: int | None = None, group: int | None = None) -> socket.socket:
    """A listening UNIX socket at ``path``, mode 0600 (0660 with a group), owned by us or
    ``owner``, in a private directory (:func:`_private_dir`).

    A stale socket (nobody listening) is replaced; a live one means another daemon runs,
    and anything that is not a socket is left alone: both are a ControlError.
    """
    _private_dir(path.parent, owner, group)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlError(f"{path} exists and is not a socket; not touching it")
        if st.st_uid not in {0, os.geteuid(), owner}:
            raise ControlError(f"{path} is owned by uid {st.st_uid}; not touching it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            path.unlink()  # stale: the daemon that made it is gone
        except OSError as e:
            raise ControlError(f"cannot check the existing socket {path}: {e.strerror}") from None
        else:
            raise ControlError(f"another espfast daemon is listening on {path}")
        finally:
            probe.close()
    mode = 0o660 if group is not None else 0o600
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o777 & ~mode)  # the socket is created with its mode: no window
    try:
        sock.bind(str(path))
        os.chown(path, -1 if owner is None else owner, -1 if group is None else group)
        os.chmod(path, mode)
    except OSError as e:
        sock.close()
        raise ControlError(f"cannot bind {path}: {e.strerror}") from None
    finally:
        os.umask(old_umask)
    sock.listen(MAX_CLIENTS)
    sock.setblocking(False)
    return sock
