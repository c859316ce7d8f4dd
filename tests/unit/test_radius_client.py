"""The gateway's RADIUS client (espfast/radius.py) over a fake transport: failover,
retransmission, identifiers per server, forged answers dropped, the bound on requests
waiting, and the [radius] config table."""

from __future__ import annotations

import asyncio
import ipaddress
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from espfast.config import ConfigError, load_up
from espfast.control.radius import Attr, Code, RadiusAnswer
from espfast.control.radius.codec import Request, decode, encode_answer
from espfast.metrics import Metrics
from espfast.radius import RadiusClient, RadiusConfig, RadiusServer

A = RadiusServer(("198.18.5.2", 1812), b"secret-a")
B = RadiusServer(("198.18.5.3", 1812), b"secret-b")


class FakeTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def close(self) -> None:
        pass


def client(**kw: object) -> tuple[RadiusClient, FakeTransport]:
    cfg = RadiusConfig(servers=(A, B), timeout=0.05, retransmit_tries=1, **kw)  # type: ignore[arg-type]
    c = RadiusClient(cfg)
    t = FakeTransport()
    c.connection_made(t)  # type: ignore[arg-type]
    return c, t


def accept_for(data: bytes, server: RadiusServer) -> bytes:
    p = decode(data)
    req = Request(p.identifier, p.authenticator, data)
    return encode_answer(Code.ACCESS_REJECT, req, [(Attr.EAP_MESSAGE, b"\x04\x01\x00\x04")],
                         server.secret)  # fmt: skip


async def _failover() -> None:
    c, t = client()
    answers: list[RadiusAnswer] = []
    c.access([(Attr.USER_NAME, b"carol")], answers.append)
    # A stays silent: first try and one retransmission, then B.
    for _ in range(200):
        await asyncio.sleep(0.01)
        if any(addr == B.address for _, addr in t.sent):
            break
    to_a = [d for d, addr in t.sent if addr == A.address]
    to_b = [d for d, addr in t.sent if addr == B.address]
    assert len(to_a) == 2 and to_a[0] == to_a[1]  # the retransmission is the same request
    data = to_b[0]
    c.datagram_received(accept_for(data, A), B.address)  # A's secret: forged for B
    c.datagram_received(accept_for(data, B), ("198.18.5.99", 1812))  # wrong source
    c.datagram_received(accept_for(data, B), B.address)
    for _ in range(100):
        await asyncio.sleep(0.01)
        if answers:
            break
    assert [a.code for a in answers] == [Code.ACCESS_REJECT]
    assert c.counters.dropped_forged == 1 and c.counters.dropped_unknown == 1
    assert c.counters.failovers == 1 and c.counters.timeouts == 1
    assert c.current == 1  # B is asked first from now on
    # One request to each server (A's retransmission counted apart), B's answer a reject.
    assert (c.counters.requests, c.counters.retransmits) == (2, 1)
    assert (c.counters.rejects, c.counters.accepts, c.counters.challenges) == (1, 0, 0)


def test_failover_and_forgeries() -> None:
    asyncio.run(_failover())


async def _bounded() -> None:
    c, t = client(max_pending=3)
    answers: list[RadiusAnswer] = []
    for _ in range(5):
        c.access([(Attr.USER_NAME, b"u")], answers.append)
    await asyncio.sleep(0)
    # the fourth and fifth fail at once; three wait
    assert [a.code for a in answers] == [None, None] and c.counters.refused_busy == 2
    idents = {decode(d).identifier for d, addr in t.sent if addr == A.address}
    assert len(idents) == 3  # one identifier each in A's space
    c.close()


def test_requests_waiting_are_bounded() -> None:
    asyncio.run(_bounded())


def test_radius_config(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "netns"))
    from eapconf import GW_ID, pki_and_users
    from updaemon import gateway_conf

    pki, _ = pki_and_users(tmp_path)
    (tmp_path / "r.secret").write_text("s3cret\n")
    (tmp_path / "r.secret").chmod(0o600)
    auth = (f'auth = "pubkey"\ncert = "{pki}/gw.crt"\nkey = "{pki}/gw.key"\n'
            'remote_auth = "eap-radius"')  # fmt: skip
    gw = gateway_conf(
        listen="198.18.0.2",
        local_id=GW_ID,
        auth=auth,
        pool="198.19.100.0/24",
        dns="198.19.2.53",
        inner="198.19.2.1/24",
        local_ts="198.19.2.0/24",
    )
    base = tmp_path / "gw.toml"
    base.write_text(gw + """
[radius]
servers = [{address = "198.18.5.2", secret_file = "r.secret"},
           {address = "198.18.5.3:1645", secret = "other", acct_port = 1646}]
interim_interval = "5m"
accounting = true
""")  # fmt: skip
    base.chmod(0o600)
    cfg = load_up(base)
    assert cfg.radius is not None
    a, b = cfg.radius.servers
    assert a.address == ("198.18.5.2", 1812) and a.secret == b"s3cret" and a.acct_port == 1813
    assert b.address == ("198.18.5.3", 1645) and b.acct_port == 1646
    assert cfg.radius.interim_interval == 300 and cfg.radius.accounting
    assert "s3cret" not in repr(cfg.radius)
    assert cfg.connections[0].ike.auth.eap_radius
    base.write_text(gw)
    with pytest.raises(ConfigError, match="needs a \\[radius\\] table"):
        load_up(base)
    # Named pools for Framed-Pool (RFC 2869 §5.18): only beside a pool, only with RADIUS.
    radius = '[radius]\nservers = [{address = "198.18.5.2", secret = "s"}]\n'
    named = ('framed_pools = { staff = ["198.19.110.0/24"], '
             '"guests 2" = ["198.19.120.5-198.19.120.9"] }\n')  # fmt: skip
    pool = 'pool = ["198.19.100.0/24"]\n'
    base.write_text(gw.replace(pool, pool + named) + radius)
    (staff, guests) = load_up(base).connections[0].ike.framed_pools
    assert staff == ("staff", (ipaddress.IPv4Network("198.19.110.0/24"),), frozenset())
    assert guests[0] == "guests 2" and len(guests[1]) == len(guests[2]) > 0  # a range: exact
    psk = 'psk = "a pre-shared key long enough"'
    for text, error in [
        (gw.replace(pool, named) + radius, "needs the connection's pool"),
        (gw.replace(pool, pool + named).replace(auth, psk), "only for remote_auth"),
        (gw.replace(pool, pool + "framed_pools = { x = [] }\n") + radius, "an empty pool"),
    ]:
        base.write_text(text)
        with pytest.raises(ConfigError, match=error):
            load_up(base)


async def _accounting_and_metrics() -> None:
    c, t = client(accounting=True)
    c.account([(Attr.USER_NAME, b"carol"), (Attr.ACCT_STATUS_TYPE, (1).to_bytes(4, "big"))])
    for _ in range(100):
        await asyncio.sleep(0.01)
        if t.sent:
            break
    data, addr = t.sent[0]
    assert addr == (A.address[0], A.acct_port)
    p = decode(data)
    c.datagram_received(encode_answer(Code.ACCOUNTING_RESPONSE, Request(p.identifier,
                        p.authenticator, data), [], A.secret), addr)  # fmt: skip
    await c.drain(1.0)
    assert (c.counters.accounting_sent, c.counters.accounting_answered) == (1, 1)
    # The same counters as Prometheus counters (espfast/metrics.py), one family each.
    daemon = SimpleNamespace(listeners=[], radius=c)
    families = {f.name: f for f in Metrics(daemon, lambda: None, 1)._radius()}  # type: ignore[arg-type,return-value]
    assert set(families) >= {f"espfast_radius_{n}" for n in (
        "requests", "accepts", "rejects", "timeouts", "failovers", "accounting_sent")}  # fmt: skip
    sent = families["espfast_radius_accounting_sent"]
    assert sent.type == "counter" and [s.value for s in sent.samples] == [1.0]
    assert [s.value for s in families["espfast_radius_requests"].samples] == [1.0]
    c.close()


def test_accounting_is_counted_and_served_as_metrics() -> None:
    asyncio.run(_accounting_and_metrics())


def test_no_radius_metrics_without_radius() -> None:
    daemon = SimpleNamespace(listeners=[], radius=None)
    assert list(Metrics(daemon, lambda: None, 1)._radius()) == []  # type: ignore[arg-type,return-value]
