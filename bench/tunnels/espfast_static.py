"""espfast itself: ``espfast static`` in each namespace, keys from a generated pair of configs."""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.tunnels import INNER_A, INNER_B, Endpoints
from espfast.netns import TwoHosts
from espfast.static import Running, pair_configs, start_in, write_private

# The AEADs, the transforms espfast is built to be fast with.
TRANSFORMS = ("aes128gcm16", "aes256gcm16", "chacha20poly1305")


class EspfastStatic:
    def __init__(self, transform: str, workers: int = 1, offload: bool = True) -> None:
        self.transform = transform
        self.workers = workers
        self.offload = offload
        self.name = f"espfast-{transform}" + (f"-w{workers}" if workers != 1 else "")
        self.name += "" if offload else "-nooffload"

    @contextlib.contextmanager
    def up(self, hosts: TwoHosts) -> Iterator[Endpoints]:
        text_a, text_b = pair_configs(
            self.transform,
            workers=self.workers,
            outer=(hosts.addr_a, hosts.addr_b),
            offload=self.offload,
        )
        with tempfile.TemporaryDirectory(prefix="espfast-bench-") as tmp:
            conf_a = write_private(Path(tmp) / "a.toml", text_a)
            conf_b = write_private(Path(tmp) / "b.toml", text_b)
            running: list[Running] = []
            try:
                running.append(start_in(hosts.a, conf_a))
                running.append(start_in(hosts.b, conf_b))
                yield Endpoints(INNER_A, INNER_B, [r.pid for r in running])
            finally:
                for r in running:
                    r.stop()


def tunnels() -> dict[str, Callable[[], EspfastStatic]]:
    """Each AEAD with one worker; AES-GCM-128 also with a worker per CPU and without TUN
    offloads; CBC+HMAC."""
    variants = [(t, 1, True) for t in TRANSFORMS]
    cpus = os.cpu_count() or 1
    if cpus > 1:
        variants.append(("aes128gcm16", cpus, True))
    variants += [("aes128gcm16", 1, False), ("aes128-sha256", 1, True)]
    return {
        EspfastStatic(t, w, o).name: functools.partial(EspfastStatic, t, w, o)
        for t, w, o in variants
    }
