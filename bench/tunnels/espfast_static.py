"""espfast itself: ``espfast static`` (manual keys) or ``espfast up`` (IKEv2, PSK) in each
namespace, from a generated pair of configs; ESP in UDP 4500, or (``-plainesp``) with
``encap = no``: plain ESP, IP protocol 50."""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.tunnels import INNER_A, INNER_B, Endpoints
from bench.tunnels.peerutil import tun_offloads
from espfast.netns import TwoHosts
from espfast.static import Running, pair_configs, start_in, write_private

# The AEADs, the transforms espfast is built to be fast with.
TRANSFORMS = ("aes128gcm16", "aes256gcm16", "chacha20poly1305")


def version() -> str:
    """espfast's version and, in a git checkout, its commit."""
    from espfast import __version__

    commit = subprocess.run(
        ["git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, timeout=10, check=False,
    ).stdout.strip()  # fmt: skip
    return f"espfast {__version__}" + (f" ({commit})" if commit else "")


def plain_esp(text: str, section: str) -> str:
    """A config with ``encap = "no"`` in its ``[[section]]``: plain ESP (IP protocol 50)."""
    return text.replace(f"[[{section}]]\n", f'[[{section}]]\nencap = "no"\n')


class EspfastStatic:
    command = "static"
    section = "sa"

    def __init__(
        self,
        transform: str,
        workers: int = 1,
        offload: bool = True,
        encap: bool = True,
        duplex: bool | None = None,
    ) -> None:
        self.transform = transform
        self.workers = workers
        self.offload = offload
        self.encap = encap
        self.duplex = duplex  # None: the default (one thread both ways with one worker)
        self.name = f"espfast-{transform}" + (f"-w{workers}" if workers != 1 else "")
        self.name += "" if offload else "-nooffload"
        self.name += "" if encap else "-plainesp"
        self.name += "-split" if duplex is False else ""

    def configs(self, hosts: TwoHosts) -> tuple[str, str]:
        texts = pair_configs(
            self.transform,
            workers=self.workers,
            outer=(hosts.addr_a, hosts.addr_b),
            offload=self.offload,
            duplex=self.duplex,
        )
        return self.framed(texts)

    def framed(self, texts: tuple[str, str]) -> tuple[str, str]:
        """With ``encap`` False, both configs say ``encap = "no"``."""
        if self.encap:
            return texts
        return plain_esp(texts[0], self.section), plain_esp(texts[1], self.section)

    @contextlib.contextmanager
    def up(self, hosts: TwoHosts) -> Iterator[Endpoints]:
        text_a, text_b = self.configs(hosts)
        with tempfile.TemporaryDirectory(prefix="espfast-bench-") as tmp:
            conf_a = write_private(Path(tmp) / "a.toml", text_a)
            conf_b = write_private(Path(tmp) / "b.toml", text_b)
            running: list[Running] = []
            try:
                # b answers, a initiates (espfast up): b first.
                running.append(start_in(hosts.b, conf_b, command=self.command))
                running.append(start_in(hosts.a, conf_a, command=self.command))
                info = {"version": version(), "offloads": tun_offloads(hosts.a, "espfast0")}
                yield Endpoints(INNER_A, INNER_B, [r.pid for r in running], info)
            finally:
                for r in running:
                    r.stop()


class EspfastUp(EspfastStatic):
    """``espfast up`` at both ends (a PSK, IKE aes128gcm16-prfsha256-x25519): the same
    dataplane as ``espfast static``, with SAs negotiated by the daemon, which runs beside
    it (counter reads, timers), so the two must move the same traffic."""

    command = "up"
    section = "connection"

    def __init__(self, transform: str, workers: int = 1, encap: bool = True) -> None:
        super().__init__(transform, workers, encap=encap)
        self.name = f"espfast-up-{transform}" + (f"-w{workers}" if workers != 1 else "")
        self.name += "" if encap else "-plainesp"

    def configs(self, hosts: TwoHosts) -> tuple[str, str]:
        from espfast.up import pair_configs as up_configs

        return self.framed(
            up_configs(
                secrets.token_hex(16),
                esp=self.transform,
                outer=(hosts.addr_a, hosts.addr_b),
                workers=self.workers,
            )
        )


def tunnels() -> dict[str, Callable[[], EspfastStatic]]:
    """Each AEAD with one worker; AES-GCM-128 also with a worker per CPU, without TUN
    offloads and with a thread per direction (``-split``); CBC+HMAC; ``espfast up`` with
    AES-GCM-128 (one worker, and one per CPU)."""
    variants = [(t, 1, True) for t in TRANSFORMS]
    cpus = min(os.cpu_count() or 1, 4)
    if cpus > 1:
        variants.append(("aes128gcm16", cpus, True))
    variants += [("aes128gcm16", 1, False), ("aes128-sha256", 1, True)]
    found: dict[str, Callable[[], EspfastStatic]] = {
        EspfastStatic(t, w, o).name: functools.partial(EspfastStatic, t, w, o)
        for t, w, o in variants
    }
    # one worker with a TX and an RX thread (duplex = false) against the default, one thread
    split = EspfastStatic("aes128gcm16", duplex=False)
    found[split.name] = functools.partial(EspfastStatic, "aes128gcm16", duplex=False)
    # plain ESP (encap = no, IP protocol 50 through raw sockets) against the same in UDP
    found[EspfastStatic("aes128gcm16", encap=False).name] = functools.partial(
        EspfastStatic, "aes128gcm16", encap=False
    )
    for w in sorted({1, cpus}):
        found[EspfastUp("aes128gcm16", w).name] = functools.partial(EspfastUp, "aes128gcm16", w)
    found[EspfastUp("aes128gcm16", encap=False).name] = functools.partial(
        EspfastUp, "aes128gcm16", encap=False
    )
    return found
