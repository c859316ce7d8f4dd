"""espfast/operations.py on two in-memory daemons (tests/unit/test_daemon.py's pair):
initiate and terminate with their outcomes, reload with its refusals; and the metrics
(espfast/metrics.py) those daemons give."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from espfast.daemon import Daemon
from espfast.metrics import Metrics, failure_reason, label_text, worker_cpu_seconds
from espfast.operations import Operations
from espfast.static import write_private
from tests.unit.test_daemon import PSK, FakeDataplane, conf, make_pair, settle

MANUAL = '\nstart_action = "none"\n'  # appended to a's config: its child's


def pair(
    tmp_path: Path, text_a: str, psk_b: str = PSK
) -> tuple[Daemon, Daemon, FakeDataplane, FakeDataplane]:
    text_b = conf(psk_b=psk_b)[1].replace('"aes128gcm16"', '"aes128gcm16,aes256gcm16"')
    a, b, dp_a, dp_b, _ = make_pair(tmp_path, asyncio.get_running_loop(), text_a, text_b)
    b.start()
    a.start()
    return a, b, dp_a, dp_b


def test_initiate_and_terminate(tmp_path: Path) -> None:
    async def scenario() -> None:
        a, b, dp_a, dp_b = pair(tmp_path, conf()[0] + MANUAL)
        ops = Operations(a)
        await asyncio.sleep(0.05)
        assert not a.sas and not dp_a.sas  # start_action = none
        result = await ops.initiate({"conn": "site"})
        assert result == {"conn": "site", "ike_sa": a.sas[0].ike_sa_id, "children": ["net"],
                          "already_up": False}  # fmt: skip
        assert len(dp_a.sas) == 2  # the Child SA is in when the answer comes
        again = await ops.initiate({"conn": "site", "child": "net"})
        assert again["already_up"] is True
        assert await ops.terminate({"conn": "site"}) == {"conn": "site", "ike_sas": 1}
        await settle(lambda: not dp_b.sas and not b.sas)
        assert not dp_a.sas and not a.sas
        with pytest.raises(ValueError, match="no IKE SA of connection 'site'"):
            await ops.terminate({"conn": "site"})
        with pytest.raises(ValueError, match=r"no connection named 'x' \(known: site\)"):
            await ops.initiate({"conn": "x"})
        with pytest.raises(ValueError, match="has no child 'x'"):
            await ops.initiate({"conn": "site", "child": "x"})
        with pytest.raises(ValueError, match="wait must be"):
            await ops.initiate({"conn": "site", "wait": -1})
        await a.shutdown()
        await b.shutdown()

    asyncio.run(scenario())


def test_initiate_failures_say_why(tmp_path: Path) -> None:
    async def scenario() -> None:
        a, b, dp_a, _ = pair(tmp_path, conf()[0] + MANUAL, psk_b="another key, long enough too")
        metrics = Metrics(a, lambda: None, 1)  # type: ignore[arg-type,return-value]
        ops = Operations(a)
        with pytest.raises(ValueError, match=r"site: IKE SA down: .*AUTHENTICATION_FAILED"):
            await ops.initiate({"conn": "site"})
        assert metrics.handshakes_failed == {"authentication_failed": 1}
        dp_a.up = False  # nothing a sends arrives: no outcome in time
        with pytest.raises(ValueError, match=r"no outcome within 0\.3 s"):
            await ops.initiate({"conn": "site", "wait": 0.3})
        await a.shutdown(0.1)
        await b.shutdown(0.1)

    asyncio.run(scenario())


def test_reload_changes_only_what_changed(tmp_path: Path) -> None:
    async def scenario() -> None:
        a, b, dp_a, dp_b = pair(tmp_path, conf()[0])
        await settle(lambda: len(dp_a.sas) == 2 and len(dp_b.sas) == 2)
        ops = Operations(a)
        source = a.config.source
        before = set(dp_a.sas)
        assert (await ops.reload())["unchanged"] == ["site"]
        assert set(dp_a.sas) == before  # nothing touched
        # Another ESP transform (b accepts both): the connection is set up again.
        write_private(source, conf(esp="aes256gcm16")[0])
        done = await ops.reload()
        assert done["changed"] == ["site"] and done["summary"].startswith(
            "0 added, 0 removed, 1 changed"
        )
        await settle(lambda: len(dp_a.sas) == 2 and not set(dp_a.sas) & before)
        # A broken file, and one that needs a restart: refused, nothing changes.
        now = set(dp_a.sas)
        write_private(source, conf()[0].replace("aes128gcm16-prfsha256", "nonsense"))
        with pytest.raises(
            ValueError, match=f"config refused: {source}: connection\\[0\\].proposals"
        ):
            await ops.reload()
        write_private(source, conf(esp="aes256gcm16")[0].replace("espfast0", "espfast9"))
        with pytest.raises(ValueError, match=r"interface\.name: changed; that takes a restart"):
            await ops.reload()
        assert set(dp_a.sas) == now and ops.reloads == {"ok": 2, "refused": 2}
        # Removed: deleted at both ends.
        other = (
            conf(esp="aes256gcm16")[0]
            .replace('name = "site"', 'name = "other"')
            .replace('remote = "198.18.0.2"', 'remote = "%any"')
        )
        write_private(source, other + MANUAL)
        done = await ops.reload()
        assert (done["added"], done["removed"]) == (["other"], ["site"])
        await settle(lambda: not dp_a.sas and not dp_b.sas)
        await a.shutdown()
        await b.shutdown()

    asyncio.run(scenario())


def test_failure_reasons_are_a_fixed_set() -> None:
    assert failure_reason("IKE_AUTH refused: N(AUTHENTICATION_FAILED)") == "authentication_failed"
    assert failure_reason("IKE_SA_INIT refused: N(NO_PROPOSAL_CHOSEN)") == "no_proposal_chosen"
    assert failure_reason("peer not responding after 5 retransmits") == "timeout"
    assert failure_reason("half-open IKE SA timed out") == "timeout"
    assert failure_reason("peer said \x1b[31m whatever it likes") == "other"


def test_identities_in_labels_are_escaped_and_bounded() -> None:
    assert label_text("CN=gw, O=x") == "CN=gw, O=x"
    assert label_text("a\nb\x00c") == "a\\nb\\x00c"
    long = label_text("x" * 1000)
    assert len(long) == 128 and long.endswith("...")


def test_worker_cpu_from_proc(tmp_path: Path) -> None:
    """proc(5) stat lines, a thread name with a space and parenthesis included."""
    import os

    tick = os.sysconf("SC_CLK_TCK")
    rest = " ".join(["S"] + ["0"] * 10 + [str(3 * tick), str(tick)] + ["0"] * 30)
    for tid, comm in (("10", "ef-rx0"), ("11", "ef-tx0"), ("12", "py (main)")):
        (tmp_path / tid).mkdir()
        (tmp_path / tid / "comm").write_text(comm + "\n")
        (tmp_path / tid / "stat").write_text(f"{tid} ({comm}) {rest}\n")
    assert worker_cpu_seconds(tmp_path) == [("rx0", 4.0), ("tx0", 4.0)]
    assert worker_cpu_seconds(tmp_path / "gone") == []


def test_control_commands_are_for_root_or_the_daemons_user_only(tmp_path: Path) -> None:
    """reload / initiate / terminate go through the control socket's SO_PEERCRED check
    like status: a client whose uid is not allowed reaches no handler."""
    from espfast.ctl import ControlServer, DaemonError, request

    called: list[str] = []
    handlers = {name: (lambda req, n=name: called.append(n) or {"ok": n})
                for name in ("reload", "initiate", "terminate")}  # fmt: skip
    status = {"schema": 1, "daemon": {}, "ike_sas": []}

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        for allowed, path in (
            (frozenset({4242}), tmp_path / "no.sock"),
            (None, tmp_path / "yes.sock"),
        ):
            async with ControlServer(lambda: status, path, handlers=handlers, allowed_uids=allowed):  # type: ignore[arg-type,return-value]
                for name in handlers:
                    call = loop.run_in_executor(
                        None, lambda n=name, p=path: request(n, p, conn="site")
                    )
                    if allowed is None:
                        assert await call == {"ok": name}
                    else:
                        with pytest.raises(DaemonError, match="permission denied"):
                            await call

    asyncio.run(scenario())
    assert called == ["reload", "initiate", "terminate"]
