"""``espfast reload`` and SIGHUP between two ``espfast up`` gateways in namespaces.

Gateway a runs four connections to b (each its own identity and prefixes). A counted UDP
flow runs through connection "keep" while a reloads a config in which "keep" is the same,
"chg" asks for another ESP transform, "gone" is no more and "new" is added: every datagram
of the flow arrives, once and in order; "keep" has the same IKE and Child SAs afterwards;
"chg" has new ones with the new transform; "gone" is deleted at both ends (b was told);
"new" is up. Then a broken file, by SIGHUP and by ``espfast reload``: refused with the
line ``espfast up`` gives at start for it, and everything keeps running."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

from espfast.netns import TwoHosts, wait_for
from espfast.static import start_in, write_private
from espfast.tools.udpflow import flow, tally
from tests.netns.opsconf import Conn, a_conf, b_conf, by_name, espfast
from tests.netns.updaemon import status
from tests.netns.uplog import Stderr

KEEP, CHG, GONE, NEW = Conn("keep", 1), Conn("chg", 11), Conn("gone", 21), Conn("new", 31)
CHG2 = Conn("chg", 11, esp="aes256gcm16")
COUNT = 3000  # datagrams through "keep", 1 ms apart: the reload happens meanwhile


def test_reload_keeps_untouched_tunnels_and_applies_the_rest(tmp_path: Path) -> None:
    a_path = write_private(tmp_path / "a.toml", a_conf([KEEP, CHG, GONE]))
    b_path = write_private(tmp_path / "b.toml", b_conf([KEEP, CHG, GONE, NEW]))
    with TwoHosts.create("ops") as hosts:
        b = start_in(hosts.b, b_path, "-v", command="up")
        a = start_in(hosts.a, a_path, "-v", command="up")
        log_a, log_b = Stderr(a), Stderr(b)

        def up(names: set[str]) -> bool:
            log_a.read(), log_b.read()
            sas = by_name(status(hosts.a))
            return set(sas) == names and all(
                sas[n]["state"] == "ESTABLISHED" and len(sas[n]["child_sas"]) == 1 for n in names
            )

        assert wait_for(lambda: up({"keep", "chg", "gone"}), timeout=30), log_a.read()
        before = by_name(status(hosts.a))

        # The flow through "keep" in a thread; the reload once the first datagrams are in.
        got: list[int] = []
        sender = threading.Thread(
            target=lambda: got.extend(
                flow(hosts.a, hosts.b, "198.19.2.1", count=COUNT, src="198.19.1.1")
            ),
        )
        sender.start()
        assert wait_for(lambda: child_packets(hosts.a, "keep") > 100, timeout=30)
        write_private(a_path, a_conf([KEEP, CHG2, NEW]))
        rc, out, err = espfast(hosts.a, "reload")
        assert rc == 0, err
        assert (
            out
            == f"espfast reload: reloaded {a_path}: 1 added, 1 removed, 1 changed, 1 unchanged\n"
        )
        sender.join(120)
        assert not sender.is_alive()
        assert wait_for(lambda: up({"keep", "chg", "new"}), timeout=30), log_a.read()
        assert wait_for(lambda: "gone" not in by_name(status(hosts.b)), timeout=15)
        after = by_name(status(hosts.a))

        # A broken file: refused, by SIGHUP as by the command, with the start's message.
        write_private(
            a_path,
            a_conf([KEEP, CHG2, NEW]).replace(
                'esp_proposals = "aes256', 'esp_proposals = "nonsense'
            ),
        )
        check = hosts.a.run(
            sys.executable, "-m", "espfast", "up", "--check", "-c", str(a_path), check=False
        )
        assert check.returncode == 2
        message = check.stderr.removeprefix("espfast up: ").strip()
        assert message.startswith(f"{a_path}: connection[1]")
        os.kill(a.pid, signal.SIGHUP)
        assert wait_for(lambda: f"reload refused: {message}" in log_a.read(), timeout=15)
        rc, out, err = espfast(hosts.a, "reload")
        assert (rc, out, err) == (2, "", f"espfast reload: {message}\n")
        # A change that takes a restart is refused too.
        write_private(a_path, a_conf([KEEP, CHG2, NEW]).replace("efops0", "efops1"))
        rc, out, err = espfast(hosts.a, "reload")
        assert rc == 2 and "interface.name: changed; that takes a restart" in err, err
        still = by_name(status(hosts.a))
        ping = hosts.a.run(
            "ping", "-c", "1", "-W", "2", "-I", "198.19.31.1", "198.19.32.1", check=False
        )
        log_a.done(), log_b.done()
        status_a, _, err_a = a.stop()
        status_b, _, err_b = b.stop()
    lost, duplicated, reordered = tally(got, COUNT)
    assert (lost, duplicated, reordered) == ([], 0, 0), (lost[:20], err_a[-3000:])
    # "keep" untouched: the same IKE SA and Child SA, which carried the whole flow.
    assert (after["keep"]["spi_i"], after["keep"]["spi_r"]) == (
        before["keep"]["spi_i"],
        before["keep"]["spi_r"],
    )
    assert spis(after["keep"]) == spis(before["keep"])
    assert after["keep"]["child_sas"][0]["packets_out"] >= COUNT
    # "chg" set up again with the new transform; "new" up and carrying traffic.
    assert after["chg"]["spi_i"] != before["chg"]["spi_i"]
    assert after["chg"]["child_sas"][0]["transform"] == "aes256gcm16"
    assert before["chg"]["child_sas"][0]["transform"] == "aes128gcm16"
    assert ping.returncode == 0, ping.stdout
    # The refused reloads changed nothing.
    assert {n: sa["spi_i"] for n, sa in still.items()} == {
        n: sa["spi_i"] for n, sa in after.items()
    }
    assert "IKE SA down" in err_b and "gone" in err_b
    assert (status_a, status_b) == (0, 0), err_a[-2000:]


def spis(sa: dict[str, object]) -> list[tuple[int, int]]:
    children = sa["child_sas"]
    assert isinstance(children, list)
    return [(c["spi_in"], c["spi_out"]) for c in children]


def child_packets(ns: object, name: str) -> int:
    from espfast.netns import Namespace

    assert isinstance(ns, Namespace)
    sa = by_name(status(ns)).get(name)
    if sa is None or not sa["child_sas"]:
        return 0
    n: int = sa["child_sas"][0]["packets_out"]
    return n
