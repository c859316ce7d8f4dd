"""``espfast initiate`` / ``terminate`` against a running ``espfast up``, its Prometheus
metrics scraped over HTTP inside the namespace, and its JSON log lines.

Gateway a has two connections to b that it does not start by itself (start_action =
none): "site" (right PSK) and "bad" (a PSK b does not know). ``initiate site`` succeeds
once the Child SA is up (ping goes through), a second time says it is already up;
``initiate bad`` fails with the reason; ``terminate site`` deletes it at both ends.
Unknown names and terminating what is not up fail with one line and exit status 1.
Meanwhile a serves metrics on 198.18.0.1:9469 (only there) and logs JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from espfast.netns import Namespace, TwoHosts, wait_for
from espfast.static import control_socket_in, start_in, write_private
from tests.netns import opsconf
from tests.netns.opsconf import FETCH, A, Conn, Samples, a_conf, b_conf, by_name, espfast
from tests.netns.updaemon import status
from tests.netns.uplog import Stderr

SITE = Conn("site", 1, start="none")
BAD = Conn("bad", 11, start="none", psk="not the key b has for this connection")
METRICS = f"{A}:9469"
GROUP = 4242  # --socket-group: a gid no user of the machine has


def scrape(ns: Namespace, address: str = METRICS) -> Samples:
    return opsconf.scrape(ns, address)


def as_nobody(ns: Namespace, groups: list[str], *args: str) -> tuple[int, str, str]:
    """``espfast ARGS`` against a's socket as uid/gid 65534 with ``groups`` (setpriv)."""
    out = ns.run(
        "setpriv", "--reuid=65534", "--regid=65534", *groups, sys.executable, "-m", "espfast",
        *args, "--socket", str(control_socket_in(ns)), check=False, timeout=60,
    )  # fmt: skip
    return out.returncode, out.stdout, out.stderr


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_initiate_terminate_metrics_json_logs(tmp_path: Path) -> None:
    a_path = write_private(tmp_path / "a.toml", a_conf([SITE, BAD], metrics=METRICS))
    b_path = write_private(tmp_path / "b.toml", b_conf([SITE, BAD]))
    with TwoHosts.create("opc") as hosts:
        b = start_in(hosts.b, b_path, command="up")
        a = start_in(hosts.a, a_path, "-v", "--log-format", "json", "--socket-group", str(GROUP),
                     command="up")  # fmt: skip
        log_a = Stderr(a)
        idle = status(hosts.a)
        empty = scrape(hosts.a)

        init = espfast(hosts.a, "initiate", "site", "--timeout", "20")
        ping = hosts.a.run(
            "ping", "-c", "3", "-i", "0.2", "-I", "198.19.1.1", "198.19.2.1", check=False
        )
        again = espfast(hosts.a, "initiate", "site")
        bad = espfast(hosts.a, "initiate", "bad", "--timeout", "20")
        unknown = espfast(hosts.a, "initiate", "nope")
        no_child = espfast(hosts.a, "initiate", "site", "--child", "nope")
        up_a, up_b = by_name(status(hosts.a)), by_name(status(hosts.b))
        # --socket-group: its members may, others may not (nobody, with and without it).
        member = as_nobody(hosts.a, ["--groups", str(GROUP)], "status", "--json")
        stranger = as_nobody(hosts.a, ["--clear-groups"], "terminate", "site")
        log_a.read()
        samples = scrape(hosts.a)
        elsewhere = hosts.a.run(
            sys.executable, "-c", FETCH, "http://127.0.0.1:9469/metrics", check=False
        )

        term = espfast(hosts.a, "terminate", "site", "--timeout", "20")
        gone_b = wait_for(lambda: not by_name(status(hosts.b)), timeout=10)
        down_a = by_name(status(hosts.a))
        term_again = espfast(hosts.a, "terminate", "site")
        after = scrape(hosts.a)
        log_a.done()
        status_a, _, err_a = a.stop()
        status_b, _, err_b = b.stop()

    assert idle == [], "start_action = none: nothing before initiate"
    assert value(empty, "espfast_ike_sas", state="established") == 0
    # initiate / terminate, like swanctl: one line, exit status.
    assert init == (0, "espfast initiate: site: established (child site)\n", ""), err_a[-3000:]
    assert ping.returncode == 0, ping.stdout
    assert again == (0, "espfast initiate: site: already up (child site)\n", "")
    assert bad[0] == 1 and bad[1] == "", bad
    assert (
        bad[2].startswith("espfast initiate: bad: IKE SA down: ")
        and "AUTHENTICATION_FAILED" in bad[2]
    ), bad
    assert unknown == (1, "", "espfast initiate: no connection named 'nope' (known: site, bad)\n")
    assert no_child == (
        1,
        "",
        "espfast initiate: connection 'site' has no child 'nope' (known: site)\n",
    )
    assert set(up_a) == {"site"} and set(up_b) == {"site"}
    assert member[0] == 0 and json.loads(member[1])["ike_sas"][0]["name"] == "site", member
    assert stranger[0] == 1 and "permission denied" in stranger[2], stranger
    assert term == (0, "espfast terminate: site: 1 IKE SA deleted\n", "")
    assert gone_b and down_a == {}
    assert term_again == (1, "", "espfast terminate: no IKE SA of connection 'site'\n")
    # Metrics: the state, the handshakes by outcome, per-SA traffic, the dataplane's.
    assert value(samples, "espfast_ike_sas", state="established") == 1
    assert value(samples, "espfast_child_sas") == 1
    assert value(samples, "espfast_ike_handshakes_total", result="ok", reason="") == 1
    assert (
        value(
            samples, "espfast_ike_handshakes_total", result="failed", reason="authentication_failed"
        )
        == 1
    )
    child = {"connection": "site", "child": "site", "remote_id": "b.test"}
    spi = f"{up_a['site']['child_sas'][0]['spi_in']:08x}"
    assert value(samples, "espfast_child_sa_packets_total", **child, spi=spi, direction="out") >= 3
    assert value(samples, "espfast_child_sa_bytes_total", **child, spi=spi, direction="in") > 0
    assert value(samples, "espfast_dataplane_packets_total", direction="in") >= 3
    assert ("espfast_dataplane_drops_total", (("reason", "replay_drops"),)) in samples
    workers = {
        dict(k[1])["worker"]
        for k in samples
        if k[0] == "espfast_dataplane_worker_cpu_seconds_total"
    }
    # one worker: one thread for both directions (duplex, its default); else TX and RX ones
    assert workers == {"io0"} or {"rx0", "tx0"} <= workers, workers
    assert value(samples, "process_resident_memory_bytes") > 0
    assert elsewhere.returncode == 3, "served only on the configured address"
    # After terminate: no SA, no per-SA series.
    assert value(after, "espfast_ike_sas", state="established") == 0
    assert not [k for k in after if k[0] == "espfast_child_sa_bytes_total"]
    # JSON logs: every log line one object; the events with their fields.
    events = [json.loads(line) for line in err_a.splitlines() if line.startswith("{")]
    assert all(set(e) >= {"time", "level", "event", "logger", "message", "fields"} for e in events)
    other = [line for line in err_a.splitlines() if line and not line.startswith("{")]
    assert all(line.startswith("espfast up: ") for line in other), other
    kinds = [e["event"] for e in events]
    for kind in (
        "initiate_requested",
        "ike_sa_up",
        "child_sa_up",
        "ike_sa_down",
        "terminate_requested",
    ):
        assert kind in kinds, kinds
    up = next(e for e in events if e["event"] == "ike_sa_up")
    assert up["fields"]["connection"] == "site" and up["fields"]["remote_id"] == "b.test"
    assert up["level"] == "INFO" and up["time"].endswith("Z")
    assert (status_a, status_b) == (0, 0), err_a[-2000:] + err_b[-2000:]
