"""The control socket (espfast.ctl) and ``espfast status``: a real UNIX socket in a tmp
dir, the server on an asyncio loop in a thread, a fake status provider."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from espfast import cli, ctl
from espfast.ctl import (
    MAX_LINE,
    ChildSaStatus,
    ControlError,
    ControlServer,
    IkeSaStatus,
    RequestError,
    SchemaError,
    StatusDocument,
    check_document,
    child_sa_status,
    drops_of,
    request,
)
from espfast.dataplane import SaStats
from espfast.status import age, mobility, render, size

NOW = 1_800_000_000.0


def child(i: int, **over: Any) -> ChildSaStatus:
    c: ChildSaStatus = {
        "name": f"net{i}",
        "state": "INSTALLED",
        "spi_in": 0xC0000000 + i,
        "spi_out": 0x0A000000 + i,
        "transform": "aes128gcm16",
        "esn": False,
        "local_ts": ["198.19.1.0/24"],
        "remote_ts": ["198.19.2.0/24", "2001:2:0:2::/64"],
        "packets_in": 10 * i,
        "bytes_in": 1500 * i,
        "packets_out": 20 * i,
        "bytes_out": 3_000_000 * i,
        "drops": {},
        "established": NOW - 65,
        "rekey_at": NOW + 3535 if i % 2 else None,
    }
    c.update(over)  # type: ignore[typeddict-item]
    return c


def ike(i: int, children: list[ChildSaStatus], **over: Any) -> IkeSaStatus:
    s: IkeSaStatus = {
        "name": f"conn{i}",
        "state": "ESTABLISHED",
        "initiator": i % 2 == 0,
        "local_addr": "198.18.0.1:4500",
        "remote_addr": f"198.18.1.{i + 1}:4500",
        "local_id": "gw.example.org",
        "remote_id": f"client{i}@example.org",
        "spi_i": 0x0123456789ABCDEF,
        "spi_r": 0xFEDCBA9876543210 - i,
        "proposal": "aes256gcm16-prfsha384-ecp384",
        "established": NOW - 3700,
        "child_sas": children,
    }
    s.update(over)  # type: ignore[typeddict-item]
    return s


def document(ike_sas: list[IkeSaStatus]) -> StatusDocument:
    return {
        "schema": 1,
        "daemon": {"pid": 4242, "version": "0.1.0", "started": NOW - 90000, "config": "gw.toml"},
        "ike_sas": ike_sas,
    }


ONE = document([ike(0, [child(1, drops={"replay_drops": 3, "auth_failures": 0})])])
MANY = document(
    [ike(i, [child(10 * i + j) for j in range(i)]) for i in range(4)]
    + [ike(9, [], state="CONNECTING", established=None, proposal="", spi_r=0)]
)


@contextlib.contextmanager
def serving(path: Path, provider: Any = lambda: ONE, **kw: Any) -> Iterator[ControlServer]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = ControlServer(provider, path, **kw)
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(5)
        yield server
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(5)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "run" / "espfast" / "espfast.sock"


def raw(path: Path, *lines: bytes, read: int | None = None) -> list[dict[str, Any]]:
    """Send raw lines on one connection; read one answer per line (or ``read`` answers)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(path))
        s.sendall(b"".join(lines))
        with s.makefile("rb") as f:
            return [json.loads(f.readline()) for _ in range(len(lines) if read is None else read)]


# --- server and client ----------------------------------------------------------------


def test_status_round_trip_and_permissions(sock_path: Path) -> None:
    with serving(sock_path):
        assert request("status", sock_path) == ONE
        assert stat.S_IMODE(sock_path.stat().st_mode) == 0o600
        assert stat.S_ISSOCK(sock_path.stat().st_mode)
        assert stat.S_IMODE(sock_path.parent.stat().st_mode) == 0o700
    assert not sock_path.exists()  # removed on close


def test_async_provider_and_extra_commands(sock_path: Path) -> None:
    calls: list[Any] = []

    async def provider() -> StatusDocument:
        await asyncio.sleep(0)
        return MANY

    async def initiate(req: Any) -> dict[str, str]:
        calls.append(req)
        if req.get("conn") != "home":
            raise RequestError(f"no connection {req.get('conn')!r}")
        return {"initiated": "home"}

    def terminate(req: Any) -> None:
        raise RuntimeError("boom (the daemon's bug)")

    handlers = {"initiate": initiate, "terminate": terminate, "bad": lambda r: {1, 2}}
    with serving(sock_path, provider, handlers=handlers) as server:
        assert server.commands == ["bad", "initiate", "status", "terminate"]
        assert request("status", sock_path) == MANY
        assert request("initiate", sock_path, conn="home") == {"initiated": "home"}
        with pytest.raises(ControlError, match="the daemon says: initiate: no connection 'x'"):
            request("initiate", sock_path, conn="x")
        with pytest.raises(ControlError, match=r"terminate: internal error \(see the daemon"):
            request("terminate", sock_path)
        with pytest.raises(ControlError, match="bad: internal error"):  # not JSON-able
            request("bad", sock_path)
        assert request("status", sock_path) == MANY  # still serving
    assert calls == [{"command": "initiate", "conn": "home"}, {"command": "initiate", "conn": "x"}]


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"hello\n", "malformed request: not JSON"),
        (b"\xff\xfe\n", "malformed request: not JSON"),
        (b"[1, 2]\n", "malformed request: not a JSON object"),
        (b'"status"\n', "malformed request: not a JSON object"),
        (b"{}\n", 'malformed request: no "command" string'),
        (b'{"command": 5}\n', 'malformed request: no "command" string'),
        (b'{"command": "reboot"}\n', "unknown command 'reboot' (known: status)"),
        (b'{"command": "status"', None),  # no newline before EOF: answered too
    ],
)
def test_malformed_requests_get_an_error(sock_path: Path, line: bytes, error: str | None) -> None:
    with serving(sock_path):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(sock_path))
            s.sendall(line)
            s.shutdown(socket.SHUT_WR)
            answer = json.loads(s.makefile("rb").readline())
        if error is None:
            assert answer == {"ok": False, "error": "malformed request: not JSON"}
        else:
            assert answer == {"ok": False, "error": error}
        assert request("status", sock_path) == ONE


def test_many_requests_on_one_connection(sock_path: Path) -> None:
    with serving(sock_path):
        answers = raw(
            sock_path,
            b'{"command":"status"}\n',
            b"\n",
            b"nope\n",
            b'{"command":"status"}\n',
            read=3,
        )
    assert answers[0] == {"ok": True, "result": ONE}
    assert answers[1]["ok"] is False
    assert answers[2] == {"ok": True, "result": ONE}


def test_overlong_request_is_refused_and_closed(sock_path: Path) -> None:
    with serving(sock_path):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(sock_path))
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                s.sendall(b"x" * (MAX_LINE + 10) + b"\n")
            f = s.makefile("rb")
            assert json.loads(f.readline()) == {
                "ok": False,
                "error": f"request longer than {MAX_LINE} bytes",
            }
            assert f.readline() == b""  # closed
        assert request("status", sock_path) == ONE


def test_peer_uid_is_checked(sock_path: Path) -> None:
    with (
        serving(sock_path, allowed_uids=frozenset({os.geteuid() + 12345})),
        pytest.raises(ControlError, match="the daemon says: permission denied"),
    ):
        request("status", sock_path)


def test_stale_socket_is_replaced_live_one_refused(sock_path: Path) -> None:
    sock_path.parent.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))  # bound, never listening: a daemon that died
    stale.close()
    with pytest.raises(ControlError, match=r"not running \(nobody listens"):
        request("status", sock_path)
    with serving(sock_path):
        assert request("status", sock_path) == ONE
        second = ControlServer(lambda: ONE, sock_path)
        with pytest.raises(ControlError, match="another espfast daemon is listening"):
            asyncio.run(second.start())
        assert request("status", sock_path) == ONE  # the first one is untouched


def test_not_a_socket_is_left_alone(sock_path: Path) -> None:
    sock_path.parent.mkdir(parents=True)
    sock_path.write_text("precious")
    with pytest.raises(ControlError, match="exists and is not a socket"):
        asyncio.run(ControlServer(lambda: ONE, sock_path).start())
    assert sock_path.read_text() == "precious"


def test_client_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ControlError, match=r"^the espfast daemon is not running \(no control"):
        request("status", tmp_path / "missing.sock")
    # A server that accepts and never answers; one that answers garbage; one that hangs up.
    for reply, message in ((None, "did not answer within 0.3 s"),
                           (b"<html>\n", "malformed answer .not JSON."),
                           (b'{"result": 1}\n', "malformed answer$"),
                           (b"", "closed the connection without an answer")):  # fmt: skip
        path = tmp_path / "fake.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as srv:
            srv.bind(str(path))
            srv.listen(1)

            def answer(srv: socket.socket = srv, reply: bytes | None = reply) -> None:
                conn, _ = srv.accept()
                conn.recv(100)
                if reply is not None:
                    conn.sendall(reply)
                    conn.close()
                else:
                    threading.Event().wait(1)
                    conn.close()

            t = threading.Thread(target=answer)
            t.start()
            with pytest.raises(ControlError, match=message) as e:
                request("status", path, timeout=0.3)
            assert "\n" not in str(e.value)
            t.join(5)
        path.unlink()


# --- the status document --------------------------------------------------------------


def test_documents_pass_the_schema() -> None:
    for doc in (ONE, MANY, document([])):
        check_document(doc)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("daemon"), "status: missing daemon"),
        (lambda d: d.update(extra=1), "status: unknown key.s. extra"),
        (
            lambda d: d["ike_sas"][0].update(spi_i="0x12"),
            r"status.ike_sas\[0\].spi_i: expected int",
        ),
        (lambda d: d["ike_sas"][0].update(initiator=1), "initiator: expected bool"),
        (lambda d: d["ike_sas"][0].update(established="now"), "established: expected a number"),
        (lambda d: d["ike_sas"][0]["child_sas"][0].update(spi_in=True), "spi_in: expected int"),
        (lambda d: d["ike_sas"][0]["child_sas"][0]["drops"].update(x="y"), "drops.x: expected int"),
        (lambda d: d["ike_sas"][0]["child_sas"][0].update(local_ts="a"), "expected a list"),
        (lambda d: d.update(ike_sas={}), "ike_sas: expected a list"),
    ],
)
def test_schema_rejects(mutate: Any, message: str) -> None:
    doc = copy.deepcopy(ONE)
    mutate(doc)
    with pytest.raises(SchemaError, match=message):
        check_document(doc)
    with pytest.raises(SchemaError):
        check_document([])


def test_drops_of_dataplane_counters() -> None:
    stats = SaStats(packets=5, bytes=500, auth_failures=0, replay_drops=2, policy_drops=0,
                    malformed=1, bad_padding=0, seq_exhausted=0, seq=7,
                    exhausted=False)  # fmt: skip
    assert drops_of(stats) == {"replay_drops": 2, "malformed": 1}


# --- rendering ------------------------------------------------------------------------


def test_render_empty() -> None:
    out = render(document([]), now=NOW)
    assert out.splitlines() == [
        "espfast daemon pid 4242 (version 0.1.0), up 1d01h, config gw.toml",
        "",
        "IKE SAs: none",
        "",
        "Child SAs: none",
    ]


def test_mobility_column() -> None:
    (ike,) = ONE["ike_sas"]
    moved = {**ike, "nat_local": True, "nat_remote": False, "mobike": True, "moves": 2}
    assert mobility(moved) == "nat-local,mobike,moved 2"
    check_document({**ONE, "ike_sas": [moved]})
    assert (
        render({**ONE, "ike_sas": [moved]}, now=NOW)
        .splitlines()[4]
        .endswith("nat-local,mobike,moved 2")
    )


def test_render_one() -> None:
    lines = render(ONE, now=NOW).splitlines()
    assert lines[2] == "IKE SAs (1):"
    header, row = lines[3], lines[4]
    assert header.split() == [
        "NAME", "STATE", "ROLE", "LOCAL", "REMOTE", "PROPOSAL", "SPIS", "ESTABLISHED",
        "MOBILITY",
    ]  # fmt: skip
    assert row.split() == [
        "conn0", "ESTABLISHED", "initiator", "198.18.0.1:4500", "[gw.example.org]",
        "198.18.1.1:4500", "[client0@example.org]", "aes256gcm16-prfsha384-ecp384",
        "0123456789abcdef_i", "fedcba9876543210_r", "1h01m", "ago", "-",
    ]  # fmt: skip
    assert lines[6] == "Child SAs (1):"
    assert lines[7].split()[:4] == ["IKE/CHILD", "STATE", "SPI", "IN"]
    assert lines[8].split() == [
        "conn0/net1", "INSTALLED", "c0000001", "0a000001", "aes128gcm16", "198.19.1.0/24",
        "198.19.2.0/24,2001:2:0:2::/64", "10", "/", "1.5", "KiB", "20", "/", "2.9", "MiB",
        "replay_drops", "3", "1m05s", "ago", "in", "58m55s",
    ]  # fmt: skip
    # Columns line up: every cell of a column starts at the header's offset.
    for name in ("STATE", "ROLE", "LOCAL", "ESTABLISHED"):
        assert row[header.index(name) - 1] == " " and row[header.index(name)] != " "
    assert all(line == line.rstrip() for line in lines)


def test_render_many() -> None:
    lines = render(MANY, now=NOW).splitlines()
    assert "IKE SAs (5):" in lines
    assert "Child SAs (6):" in lines  # 0 + 1 + 2 + 3 children
    connecting = next(line for line in lines if line.lstrip().startswith("conn9"))
    assert connecting.split()[1] == "CONNECTING"
    assert connecting.split()[-1] == "-"  # not established
    assert " - " in connecting  # no proposal yet
    children = lines[lines.index("Child SAs (6):") + 2 :]
    assert [c.split()[0] for c in children] == [
        "conn1/net10", "conn2/net20", "conn2/net21", "conn3/net30", "conn3/net31", "conn3/net32",
    ]  # fmt: skip
    assert len({c.index("INSTALLED") for c in children}) == 1
    esn = copy.deepcopy(MANY)
    esn["ike_sas"][1]["child_sas"][0]["esn"] = True
    assert "aes128gcm16-esn" in render(esn, now=NOW)


def test_render_counters() -> None:
    """espfast up adds its own counters and the dataplane's: the ones that moved, then
    the dataplane's traffic and drops."""
    doc = copy.deepcopy(ONE)
    doc["daemon"]["counters"] = {"datagrams_in": 12, "child_sas_rekeyed": 3, "event_errors": 0}
    doc["daemon"]["dataplane"] = {
        "rx_packets": 10, "rx_bytes": 1500, "tx_packets": 20, "tx_bytes": 3000,
        "replay_drops": 2, "unknown_spi": 0, "spi_late": 4,
    }  # fmt: skip
    check_document(doc)
    lines = render(doc, now=NOW).splitlines()
    assert lines[-2:] == [
        "Counters: datagrams in 12, child sas rekeyed 3",
        "Dataplane: in 10 / 1.5 KiB, out 20 / 2.9 KiB, drops: replay_drops 2",
    ]
    doc["daemon"]["counters"] = {"datagrams_in": "12"}  # type: ignore[dict-item]
    with pytest.raises(SchemaError, match=r"daemon.counters.datagrams_in: expected int"):
        check_document(doc)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(-5, "0s"), (0, "0s"), (59, "59s"), (60, "1m00s"), (3599, "59m59s"), (3600, "1h00m"),
     (86399, "23h59m"), (86400, "1d00h"), (10 * 86400 + 7200, "10d02h")],
)  # fmt: skip
def test_age(seconds: float, text: str) -> None:
    assert age(seconds) == text


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
     (5 * 1024**2, "5.0 MiB"), (3 * 1024**3, "3.0 GiB"), (2 * 1024**4, "2.0 TiB"),
     (5000 * 1024**4, "5000.0 TiB")],
)  # fmt: skip
def test_size(n: int, text: str) -> None:
    assert size(n) == text


# --- the command ----------------------------------------------------------------------


def test_status_command_table_and_json(sock_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with serving(sock_path, lambda: MANY):
        assert cli.main(["status", "--socket", str(sock_path)]) == 0
        table = capsys.readouterr().out
        assert cli.main(["status", "--socket", str(sock_path), "--json"]) == 0
        raw_json = capsys.readouterr().out
    assert "IKE SAs (5):" in table and "conn3/net32" in table
    assert json.loads(raw_json) == MANY


def test_status_command_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "none.sock"
    assert cli.main(["status", "--socket", str(missing)]) == 1
    err = capsys.readouterr().err
    assert (
        err == f"espfast status: the espfast daemon is not running (no control socket {missing})\n"
    )
    bad = copy.deepcopy(ONE)
    del bad["ike_sas"][0]["child_sas"][0]["spi_in"]
    with serving(tmp_path / "s.sock", lambda: bad):
        assert cli.main(["status", "--socket", str(tmp_path / "s.sock"), "--json"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("espfast status: the daemon sent a malformed status: ")
    assert "missing spi_in" in err and err.count("\n") == 1


def test_child_sa_status_from_event_and_counters() -> None:
    from ipaddress import ip_network

    from espfast.control.events import ChildSaUp, TrafficSelector

    up = ChildSaUp(
        ike_sa_id=1, name="net", spi_in=0xC1, spi_out=0xC2, transform="chacha20poly1305",
        esn=True, enc_key_in=b"k" * 36, integ_key_in=b"", enc_key_out=b"l" * 36,
        integ_key_out=b"", local_ts=(TrafficSelector.from_network(ip_network("198.19.1.0/24")),),
        remote_ts=(TrafficSelector.from_network(ip_network("2001:2:0:2::/64")),),
        peer=("198.18.1.1", 4500),
    )  # fmt: skip
    zero = dict.fromkeys(("auth_failures", "replay_drops", "policy_drops", "malformed",
                          "bad_padding", "seq_exhausted"), 0)  # fmt: skip
    s_in = SaStats(packets=3, bytes=300, seq=3, exhausted=False, **{**zero, "replay_drops": 1})
    s_out = SaStats(packets=4, bytes=400, seq=4, exhausted=False, **{**zero, "seq_exhausted": 2})
    c = child_sa_status(up, s_in, s_out, established=NOW, rekey_at=NOW + 60)
    check_document(c, ChildSaStatus, "child")
    assert c["local_ts"] == ["198.19.1.0/24"] and c["remote_ts"] == ["2001:2:0:2::/64"]
    assert (c["packets_in"], c["bytes_in"], c["packets_out"], c["bytes_out"]) == (3, 300, 4, 400)
    assert c["drops"] == {"replay_drops": 1, "seq_exhausted": 2}
    assert (c["spi_in"], c["spi_out"], c["esn"], c["state"]) == (0xC1, 0xC2, True, "INSTALLED")
    assert "k" * 36 not in json.dumps(c)  # no key material in the document


def test_connection_limit_and_idle_timeout(
    sock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ctl, "IDLE_TIMEOUT", 0.3)
    with serving(sock_path):
        idle = []
        for _ in range(ctl.MAX_CLIENTS):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(str(sock_path))
            idle.append(s)
        try:
            answers = raw(sock_path, b'{"command":"status"}\n')
            assert answers == [{"ok": False, "error": "too many control connections, try again"}]
        finally:
            # The idle ones are closed by the server after IDLE_TIMEOUT.
            assert all(s.recv(10) == b"" for s in idle)
            for s in idle:
                s.close()
        assert request("status", sock_path) == ONE
