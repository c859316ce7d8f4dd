"""Prometheus metrics of ``espfast up`` (``[interface] metrics = "ADDR:PORT"``).

prometheus-client serves ``http://ADDR:PORT/metrics`` from a thread of its own, on that
address only. Each scrape asks the event loop for a snapshot (:meth:`Metrics.families`
runs there, so it reads the daemon's state and the dataplane's counters as the loop sees
them, never half-way through an event) and waits at most SCRAPE_TIMEOUT for it.

The names (README.md, "Metrics", lists them for dashboards):

    espfast_build_info{version}                        1
    espfast_ike_sas{state}                             IKE SAs now, by state
    espfast_child_sas                                  Child SAs installed now
    espfast_ike_handshakes_total{result,reason}        IKE SAs set up: ok, or failed by reason
    espfast_child_sa_failures_total{reason}            Child SAs that could not be made
    espfast_<daemon counter>_total                     datagrams_in, ike_sas_rekeyed,
                                                       child_sas_rekeyed, ike_retransmits, ...
    espfast_responder_<counter>_total                  the front door: cookies_sent,
                                                       dropped_half_open_limit, refused, ...
    espfast_config_reloads_total{result}               ok / refused
    espfast_child_sa_bytes_total{connection,child,remote_id,spi,direction}
    espfast_child_sa_packets_total{...same}            per established Child SA
    espfast_dataplane_packets_total{direction}         and _bytes_total
    espfast_dataplane_drops_total{reason}              auth_failures, replay_drops, ...
    espfast_dataplane_<counter>_total                  keepalives, ike_forwarded, offloads
    espfast_dataplane_spi_held                         ESP waiting for its SA now
    espfast_dataplane_workers                          worker threads per direction
    espfast_dataplane_worker_cpu_seconds_total{worker} CPU time of each worker thread
    espfast_heap_bytes                                 the malloc heap (glibc mallinfo2)
    espfast_radius_<counter>_total                     with [radius]: requests, accepts,
                                                       rejects, timeouts, failovers,
                                                       accounting_sent, ...
    espfast_python_traced_bytes                        Python's heap (only under tracemalloc)
    process_*                                          prometheus-client's process metrics

Cardinality: series per SA exist only for Child SAs the dataplane carries, that is after
the peer authenticated (a peer gets as many as its connection allows); every other label
takes values from a fixed set (failure reasons are the RFC 7296 error notify names, or
``timeout`` / ``other``; never the peer's text). Identities are label values after
escaping (control characters as ``\\xNN``, at most MAX_LABEL characters).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from espfast import __version__
from espfast.control.text import printable

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from espfast.control.events import Event
    from espfast.daemon import Daemon
    from espfast.dataplane import Stats
    from espfast.operations import Operations

log = logging.getLogger(__name__)

SCRAPE_TIMEOUT = 5.0  # seconds a scrape waits for the event loop's snapshot
MAX_LABEL = 128  # characters of an identity in a label value
WORKER_PREFIX = "ef-"  # the dataplane's worker threads: ef-io0 (duplex), or ef-rx0, ef-tx0, ...


def failure_reason(text: str) -> str:
    """A failure's reason from a fixed set: the RFC 7296 error notify it names
    (``authentication_failed``, ``no_proposal_chosen``, ...), ``timeout`` when the peer
    never answered, else ``other``. Never the text itself: that may hold what the peer
    sent, and every distinct value would be a new series."""
    from espfast.control.constants import NotifyType

    for n in NotifyType:
        if n < 16384 and n.name in text:
            return n.name.lower()
    low = text.lower()
    if "not responding" in low or "timed out" in low or "retransmit" in low:
        return "timeout"
    return "other"


def label_text(text: str) -> str:
    """A label value from a string a peer may have chosen (an identity)."""
    text = printable(text)
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 3] + "..."


class Metrics:
    """Counts what the daemon's events tell (handshakes, failures) and builds the metric
    families from the daemon and the dataplane on request (on the event loop)."""

    def __init__(
        self,
        daemon: Daemon,
        dataplane_stats: Callable[[], Stats],
        workers: int,
        ops: Operations | None = None,
    ) -> None:
        self.daemon = daemon
        self.dataplane_stats = dataplane_stats
        self.workers = workers
        self.ops = ops
        self.handshakes_ok = 0
        self.handshakes_failed: Counter[str] = Counter()
        self.child_failures: Counter[str] = Counter()
        daemon.listeners.append(self.on_event)

    def on_event(self, event: Event) -> None:
        from espfast.control.events import ChildSaFailed, IkeSaDown, IkeSaUp

        if isinstance(event, IkeSaUp):
            self.handshakes_ok += 1
        elif isinstance(event, IkeSaDown) and event.cause == "failed":
            self.handshakes_failed[failure_reason(event.reason)] += 1
        elif isinstance(event, ChildSaFailed):
            self.child_failures[failure_reason(event.reason)] += 1

    def families(self) -> list[Metric]:
        """Every metric now (call on the event loop)."""
        out: list[Metric] = []
        info = GaugeMetricFamily("espfast_build_info", "espfast version", labels=["version"])
        info.add_metric([__version__], 1)
        out.append(info)
        out += self._ike()
        out += self._daemon_counters()
        out += self._child_sas()
        out += self._dataplane()
        out += self._memory()
        out += self._radius()
        return out

    def _radius(self) -> Iterator[Metric]:
        """The RADIUS client's counters (espfast/radius.py), when [radius] is configured."""
        radius = self.daemon.radius
        if radius is None:
            return
        for name, value in dataclasses.asdict(radius.counters).items():
            yield CounterMetricFamily(f"espfast_radius_{name}", f"RADIUS: {_help(name)}",
                                      value=value)  # fmt: skip

    def _memory(self) -> Iterator[Metric]:
        import tracemalloc

        from espfast.dataplane import heap_in_use

        yield GaugeMetricFamily(
            "espfast_heap_bytes",
            "bytes the process's malloc heap holds (glibc mallinfo2): the dataplane's SAs, "
            "OpenSSL's contexts and the larger Python objects",
            value=heap_in_use(),
        )
        if tracemalloc.is_tracing():  # PYTHONTRACEMALLOC=1: for memory benchmarks
            yield GaugeMetricFamily(
                "espfast_python_traced_bytes",
                "bytes Python's allocations hold now (tracemalloc)",
                value=tracemalloc.get_traced_memory()[0],
            )

    def _ike(self) -> Iterator[Metric]:
        dm = self.daemon
        states: Counter[str] = Counter(sa.state.value for sa in dm.sas)
        g = GaugeMetricFamily("espfast_ike_sas", "IKE SAs by state", labels=["state"])
        for state in ("connecting", "established", "deleting"):
            states.setdefault(state, 0)
        for state, n in sorted(states.items()):
            g.add_metric([state], n)
        yield g
        yield GaugeMetricFamily("espfast_child_sas", "Child SAs installed", value=len(dm.children))
        hs = CounterMetricFamily(
            "espfast_ike_handshakes",
            "IKE SAs set up (ok) or that never came up (failed), by reason",
            labels=["result", "reason"],
        )
        hs.add_metric(["ok", ""], self.handshakes_ok)
        for reason, n in sorted(self.handshakes_failed.items()):
            hs.add_metric(["failed", reason], n)
        yield hs
        cf = CounterMetricFamily(
            "espfast_child_sa_failures", "Child SAs that could not be made", labels=["reason"]
        )
        for reason, n in sorted(self.child_failures.items()):
            cf.add_metric([reason], n)
        yield cf

    def _daemon_counters(self) -> Iterator[Metric]:
        dm = self.daemon
        dm.count_ike()
        for name, value in dataclasses.asdict(dm.counters).items():
            yield CounterMetricFamily(f"espfast_{name}", _help(name), value=value)
        front = dm.mgr.responder
        if front is not None:
            for name, value in dataclasses.asdict(front.counters).items():
                yield CounterMetricFamily(
                    f"espfast_responder_{name}", f"IKE responder: {_help(name)}", value=value
                )
        if self.ops is not None:
            rl = CounterMetricFamily(
                "espfast_config_reloads", "config reloads, by result", labels=["result"]
            )
            rl.add_metric(["ok"], self.ops.reloads["ok"])
            rl.add_metric(["refused"], self.ops.reloads["refused"])
            yield rl

    def _child_sas(self) -> Iterator[Metric]:
        from espfast.dataplane import Direction

        dm = self.daemon
        labels = ["connection", "child", "remote_id", "spi", "direction"]
        nbytes = CounterMetricFamily(
            "espfast_child_sa_bytes", "inner bytes through a Child SA", labels=labels
        )
        packets = CounterMetricFamily(
            "espfast_child_sa_packets", "packets through a Child SA", labels=labels
        )
        ike = {sa.ike_sa_id: sa for sa in dm.sas if sa.is_established}
        ids = {i: str(sa.status()["remote_id"]) for i, sa in ike.items()}
        for spi_in, child in dm.children.items():
            sa = ike.get(child.ike_sa_id)
            if sa is None:
                continue
            base = [
                sa.config.name,
                child.up.name,
                label_text(ids[child.ike_sa_id]),
                f"{spi_in:08x}",
            ]
            for direction, spi, d in (("in", spi_in, Direction.IN),
                                      ("out", child.spi_out, Direction.OUT)):  # fmt: skip
                try:
                    st = dm.dataplane.sa_stats(spi, d)
                except ValueError:  # removed meanwhile
                    continue
                nbytes.add_metric([*base, direction], st.bytes)
                packets.add_metric([*base, direction], st.packets)
        yield nbytes
        yield packets

    def _dataplane(self) -> Iterator[Metric]:
        from espfast.dataplane import Stats

        st = dataclasses.asdict(self.dataplane_stats())
        for unit, key in (("packets", "packets"), ("bytes", "bytes")):
            m = CounterMetricFamily(
                f"espfast_dataplane_{unit}", f"ESP {unit} by direction", labels=["direction"]
            )
            m.add_metric(["in"], st[f"rx_{key}"])
            m.add_metric(["out"], st[f"tx_{key}"])
            yield m
        drops = CounterMetricFamily(
            "espfast_dataplane_drops", "packets dropped, by reason", labels=["reason"]
        )
        for name, value in sorted(st.items()):
            if name not in Stats.NOT_DROPS:
                drops.add_metric([name], value)
        yield drops
        for name in sorted(Stats.NOT_DROPS - {"rx_packets", "rx_bytes", "tx_packets", "tx_bytes"}):
            if name == "spi_held":
                yield GaugeMetricFamily(
                    "espfast_dataplane_spi_held", "ESP waiting for its SA now", value=st[name]
                )
            else:
                yield CounterMetricFamily(f"espfast_dataplane_{name}", _help(name), value=st[name])
        yield GaugeMetricFamily(
            "espfast_dataplane_workers", "worker threads per direction", value=self.workers
        )
        cpu = CounterMetricFamily(
            "espfast_dataplane_worker_cpu_seconds",
            "CPU time of each dataplane worker thread (rate(): its load, 1 = a whole CPU)",
            labels=["worker"],
        )
        for name, seconds in worker_cpu_seconds():
            cpu.add_metric([name], seconds)
        yield cpu


def _help(name: str) -> str:
    return name.replace("_", " ")


def worker_cpu_seconds(task_dir: Path = Path("/proc/self/task")) -> list[tuple[str, float]]:
    """(thread name without WORKER_PREFIX, user + system CPU seconds) of each dataplane
    worker thread of this process, from /proc (proc(5): utime and stime, fields 14-15)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = []
    try:
        tasks = list(task_dir.iterdir())
    except OSError:
        return []
    for task in tasks:
        try:
            name = (task / "comm").read_text().strip()
            if not name.startswith(WORKER_PREFIX):
                continue
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out.append((name[len(WORKER_PREFIX) :], (int(fields[11]) + int(fields[12])) / tick))
    return sorted(out)


class _Snapshot(Collector):
    """The registry's collector: each scrape runs :meth:`Metrics.families` on the loop."""

    def __init__(self, metrics: Metrics, loop: asyncio.AbstractEventLoop) -> None:
        self.metrics = metrics
        self.loop = loop

    def collect(self) -> Iterable[Metric]:
        done: concurrent.futures.Future[list[Metric]] = concurrent.futures.Future()

        def snapshot() -> None:
            try:
                done.set_result(self.metrics.families())
            except Exception as e:  # a bug of ours: a failed scrape, not a dead loop
                done.set_exception(e)

        self.loop.call_soon_threadsafe(snapshot)
        return done.result(SCRAPE_TIMEOUT)


class MetricsServer:
    """``http://ADDR:PORT/metrics`` for :class:`Metrics`; :meth:`move` after a reload."""

    def __init__(self, metrics: Metrics, loop: asyncio.AbstractEventLoop) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Snapshot(metrics, loop))
        ProcessCollector(registry=self.registry)
        self.address: tuple[str, int] | None = None
        self._server: WSGIServer | None = None
        self._thread: Any = None

    def start(self, address: tuple[str, int]) -> None:
        """Serve on ``address`` (OSError if it cannot be bound)."""
        try:
            self._server, self._thread = start_http_server(address[1], address[0], self.registry)
        except OSError as e:
            raise OSError(
                e.errno, f"cannot serve metrics on {_url_host(address)}: {e.strerror or e}"
            ) from None
        self.address = address
        log.info("metrics on http://%s/metrics", _url_host(address))

    def move(self, address: tuple[str, int] | None) -> None:
        """Serve on ``address`` from now on (None: nowhere). A new address that cannot be
        bound leaves the old one serving (and the error logged)."""
        if address == self.address:
            return
        old = (self._server, self._thread, self.address)
        if address is not None:
            try:
                self.start(address)
            except OSError as e:
                self._server, self._thread, self.address = old
                log.error("metrics: cannot serve on %s: %s", _url_host(address), e)
                return
        else:
            self.address = self._server = self._thread = None
        _shut(old[0], old[1])

    def stop(self) -> None:
        _shut(self._server, self._thread)
        self._server = self._thread = self.address = None


def _shut(server: WSGIServer | None, thread: Any) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _url_host(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
