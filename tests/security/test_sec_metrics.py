"""Attack: inflate the metrics' cardinality before authenticating.

Gateway b serves metrics on 198.18.0.2:9469. From a, an attacker sends garbage IKE
datagrams, floods IKE_SA_INIT from 40 addresses, and runs an initiator with a wrong PSK
and an identity of its choosing. None of it adds a series whose labels the attacker
chose: no per-SA series exist until a Child SA is installed, failures count under reasons
from a fixed set, the half-open IKE SAs stay within the cookie threshold. Then a real
peer authenticates and gets exactly its per-SA series."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from espfast.control.constants import NotifyType
from espfast.netns import Namespace, TwoHosts, wait_for
from espfast.static import start_in, write_private
from espfast.up import pair_configs
from tests.netns import opsconf
from tests.netns.opsconf import Samples

PSK = "the metrics attack test's pre-shared key"
PROBE = str(Path(__file__).parents[1] / "netns" / "ikeprobe.py")
METRICS = "198.18.0.2:9469"
COOKIE_THRESHOLD = 5
EVIL_ID = "attacker-chosen-identity.test"
REASONS = {n.name.lower() for n in NotifyType if n < 16384} | {"timeout", "other", ""}


def scrape(ns: Namespace) -> Samples:
    return opsconf.scrape(ns, METRICS)


def per_sa(samples: Samples) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    return [
        k for k in samples if k[0].startswith("espfast_child_sa_") and "remote_id" in dict(k[1])
    ]


def test_unauthenticated_traffic_adds_no_series_of_its_own(tmp_path: Path) -> None:
    a_conf, b_conf = pair_configs(PSK)
    b_conf = b_conf.replace(
        "[interface]\n",
        f'[interface]\ncookie_threshold = {COOKIE_THRESHOLD}\nmetrics = "{METRICS}"\n',
    )
    a_path = write_private(tmp_path / "a.toml", a_conf)
    evil = a_conf.replace(PSK, "not the pre-shared key b knows!!").replace(
        'local_id = "198.18.0.1"', f'local_id = "{EVIL_ID}"'
    )
    evil_path = write_private(tmp_path / "evil.toml", evil)
    sources = [f"198.18.0.{n}" for n in range(100, 140)]
    with TwoHosts.create("smx") as hosts:
        for src in sources:
            hosts.a.run("ip", "addr", "add", f"{src}/32", "dev", "veth-a")
        b = start_in(hosts.b, write_private(tmp_path / "b.toml", b_conf), command="up")
        before = scrape(hosts.b)
        hosts.a.run(sys.executable, PROBE, "garbage", str(a_path), hosts.addr_b)
        flood = json.loads(
            hosts.a.run(sys.executable, PROBE, "flood", str(a_path), hosts.addr_b, *sources).stdout
        )
        attacked = scrape(hosts.b)
        wrong = start_in(hosts.a, evil_path, command="up")
        refused = wait_for(
            lambda: any(
                k[0] == "espfast_ike_handshakes_total" and dict(k[1])["result"] == "failed"
                for k in scrape(hosts.b)
            ),
            timeout=20,
        )
        wrong.stop()
        after_auth_failure = scrape(hosts.b)
        a = start_in(hosts.a, a_path, command="up")
        up = wait_for(lambda: len(per_sa(scrape(hosts.b))) == 4, timeout=20)
        legit = scrape(hosts.b)
        a.stop()
        status_b, _, err_b = b.stop()
    assert list(flood.values()).count("init") == COOKIE_THRESHOLD
    assert refused, err_b[-2000:]
    for samples in (attacked, after_auth_failure):
        assert not per_sa(samples), per_sa(samples)
        new = set(samples) - set(before)
        # The only new series: failures under a fixed set of reasons.
        assert {k[0] for k in new} <= {"espfast_ike_handshakes_total"}, new
        assert all(dict(k[1])["reason"] in REASONS for k in new), new
        assert not any(EVIL_ID in v or "198.18.0.1" in v for k in samples for _, v in k[1])
        assert samples[("espfast_ike_sas", (("state", "connecting"),))] <= COOKIE_THRESHOLD
    assert attacked[("espfast_malformed_total", ())] > 0
    cookies = attacked[("espfast_responder_cookies_sent_total", ())]
    assert cookies >= len(sources) - COOKIE_THRESHOLD
    # The real peer, authenticated: its Child SA's series (bytes and packets, in and out).
    assert up, err_b[-2000:]
    series = per_sa(legit)
    assert {dict(k[1])["remote_id"] for k in series} == {"198.18.0.1"}
    assert {dict(k[1])["connection"] for k in series} == {"site"}
    assert status_b == 0, err_b[-2000:]
