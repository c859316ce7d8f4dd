"""espfast.daemon: two daemons wired together in memory (no sockets, no root).

Each daemon gets a fake dataplane that records the SAs it is given and hands IKE datagrams
on "port 4500" to the other daemon; "port 500" goes the same way. The assertions are about
the I/O shell: the Child SA negotiated by the control plane lands in both dataplanes as
matching inbound/outbound pairs, and a shutdown removes it on both sides.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from espfast.config import ConfigError, UpConfig, load_up
from espfast.control.config import Lifetime
from espfast.control.events import ChildSaRekeyed, PeerAddressChanged
from espfast.control.rng import SystemRng
from espfast.daemon import Daemon
from espfast.dataplane import Direction, SaParams, SaStats
from espfast.static import write_private
from espfast.up import pair_configs

PSK = "correct horse battery staple, twice over"

A, B = "198.18.0.1", "198.18.0.2"


def conf(*, esp: str = "aes128gcm16", psk_b: str = PSK) -> tuple[str, str]:
    """a initiates, b answers; b's PSK may differ."""
    text_a, text_b = pair_configs(PSK, esp=esp)
    return text_a, text_b.replace(PSK, psk_b)


@dataclass
class FakeDataplane:
    me: str
    sas: dict[tuple[int, Direction], SaParams] = field(default_factory=dict)
    peer: Daemon | None = None
    loop: asyncio.AbstractEventLoop | None = None
    up: bool = True  # False: everything this side sends is lost
    drop: int = 0  # this many of the next IKE datagrams this side sends are lost
    refuse_out: bool = False  # add_sa of outbound SAs fails (as a full table would)
    traffic: tuple[int, int] = (0, 0)  # what sa_stats says: bytes, packets
    other: FakeDataplane | None = None  # the peer's dataplane
    heard: set[int] = field(default_factory=set)  # inbound SPIs the peer has sent on
    own: Daemon | None = None  # the daemon this dataplane belongs to
    # Traffic flows all the time (False: nothing moves unless `move` says so): each
    # watch_traffic is answered at once with a notice, as the C workers would.
    flowing: bool = True
    watching: bool = False
    reads: int = 0  # sa_stats calls

    def watch_traffic(self) -> None:
        self.watching = True
        if self.flowing:
            self.move(self.traffic)

    def move(self, traffic: tuple[int, int]) -> None:
        """Counters now at ``traffic``; the watching daemon hears of it."""
        self.traffic = traffic
        if self.watching and self.own is not None and self.loop is not None:
            self.watching = False
            self.loop.call_soon(self.own.traffic_moved)

    def add_sa(self, sa: SaParams) -> None:
        if self.refuse_out and sa.direction is Direction.OUT:
            raise ValueError("no room")
        key = (sa.spi, sa.direction)
        if key in self.sas:
            raise ValueError("exists")
        self.sas[key] = sa

    def remove_sa(self, spi: int, direction: Direction) -> None:
        if self.sas.pop((spi, direction), None) is None:
            raise ValueError("no such SA")

    def lost(self) -> bool:
        """Whether the IKE datagram being sent is lost (see ``drop``)."""
        self.drop, lost = max(self.drop - 1, 0), self.drop > 0
        return lost

    def update_peer(
        self,
        spi: int,
        peer: tuple[str, int],
        *,
        direction: Direction = Direction.OUT,
        raw_esp: bool | None = None,
    ) -> None:
        raise AssertionError("no peer moves here")

    def sa_stats(self, spi: int, direction: Direction) -> SaStats:
        """Traffic flows all the time both ways, on the SA each side sends on: an inbound
        SA has packets once the peer has sent on it."""
        assert (spi, direction) in self.sas
        self.reads += 1
        counters = {f.name: 0 for f in dataclasses.fields(SaStats)}
        octets, packets = self.traffic
        packets = packets or 7
        if direction is Direction.IN:
            if self.other is not None and in_use(self.other) == spi:
                self.heard.add(spi)
            if spi not in self.heard:
                octets = packets = 0
        return SaStats(**counters | {"packets": packets, "bytes": octets, "exhausted": False})

    def send_keepalive(self, peer: tuple[str, int]) -> None:
        raise AssertionError("no NAT here")

    def send_ike(self, data: bytes, peer: tuple[str, int]) -> None:
        assert self.peer is not None and self.loop is not None
        if self.up and not self.lost():
            self.loop.call_soon(self.peer.datagram_received, data, (self.me, 4500), 4500)


def make_pair(
    tmp_path: Path, loop: asyncio.AbstractEventLoop, text_a: str, text_b: str
) -> tuple[Daemon, Daemon, FakeDataplane, FakeDataplane, list[object]]:
    routes: list[object] = []

    def add_routes(nets: Iterable[object]) -> None:
        routes.extend(nets)

    daemons: list[Daemon] = []
    fakes = []
    for me, text in ((A, text_a), (B, text_b)):
        cfg: UpConfig = load_up(write_private(tmp_path / f"{me}.toml", text))
        fake = FakeDataplane(me, loop=loop)

        def send_500(
            data: bytes, addr: tuple[str, int], me: str = me, fake: FakeDataplane = fake
        ) -> None:
            other = daemons[1] if me == A else daemons[0]
            if fake.up and not fake.lost():
                loop.call_soon(other.datagram_received, data, (me, 500), 500)

        daemons.append(Daemon(cfg, fake, add_routes, send_500, SystemRng(), loop))
        fakes.append(fake)
    fakes[0].peer, fakes[1].peer = daemons[1], daemons[0]
    fakes[0].own, fakes[1].own = daemons[0], daemons[1]
    fakes[0].other, fakes[1].other = fakes[1], fakes[0]
    return daemons[0], daemons[1], fakes[0], fakes[1], routes


async def settle(condition: object, timeout: float = 5.0) -> None:
    assert callable(condition)
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("esp", ["aes128gcm16", "chacha20poly1305", "aes256-sha256"])
def test_child_sa_lands_in_both_dataplanes_and_goes_on_shutdown(tmp_path: Path, esp: str) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        a, b, dp_a, dp_b, routes = make_pair(tmp_path, loop, *conf(esp=esp))
        b.start()
        a.start()
        await settle(lambda: len(dp_a.sas) == 2 and len(dp_b.sas) == 2)
        for (spi, direction), sa in dp_a.sas.items():
            other = Direction.IN if direction is Direction.OUT else Direction.OUT
            mirror = dp_b.sas[(spi, other)]
            assert (sa.transform, sa.esn) == (mirror.transform, mirror.esn)
            assert sa.transform == esp
            assert (sa.enc_key, sa.integ_key) == (mirror.enc_key, mirror.integ_key)
            assert sa.local_ts == mirror.remote_ts and sa.remote_ts == mirror.local_ts
        out_a = next(sa for (_, d), sa in dp_a.sas.items() if d is Direction.OUT)
        assert out_a.peer == (B, 4500)  # ESP always goes UDP-encapsulated
        assert out_a.remote_ts == (ipaddress.ip_network("198.19.2.0/24"),)
        assert ipaddress.ip_network("198.19.2.0/24") in routes
        assert a.counters.ike_sas_up == b.counters.ike_sas_up == 1

        await a.shutdown(timeout=5)
        await settle(lambda: not dp_b.sas)
        assert not dp_a.sas and not a.sas
        assert b.counters.child_sas_removed == 1

    asyncio.run(scenario())


def test_example_configs_negotiate_with_each_other(tmp_path: Path) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples"
    text_a = (examples / "up-a.toml").read_text()
    text_b = (examples / "up-b.toml").read_text()

    async def scenario() -> None:
        a, b, dp_a, dp_b, _ = make_pair(tmp_path, asyncio.get_running_loop(), text_a, text_b)
        b.start()
        a.start()
        await settle(lambda: len(dp_a.sas) == 2 and len(dp_b.sas) == 2)
        assert {sa.transform for sa in dp_a.sas.values()} == {"aes128gcm16"}

    asyncio.run(scenario())


def test_a_refused_sa_is_logged_and_leaves_nothing_half_installed(tmp_path: Path) -> None:
    async def scenario() -> None:
        a, b, dp_a, dp_b, _ = make_pair(tmp_path, asyncio.get_running_loop(), *conf())
        dp_a.refuse_out = True
        b.start()
        a.start()
        await settle(lambda: a.counters.event_errors == 1 and len(dp_b.sas) == 2)
        assert not dp_a.sas  # the inbound half went again
        assert a.counters.ike_sas_up == 1  # the daemon goes on

    asyncio.run(scenario())


def test_status_document(tmp_path: Path) -> None:
    from espfast.ctl import check_document

    async def scenario() -> None:
        a, b, dp_a, dp_b, _ = make_pair(tmp_path, asyncio.get_running_loop(), *conf())
        b.start()
        a.start()
        await settle(lambda: len(dp_a.sas) == 2 and len(dp_b.sas) == 2)
        doc = a.status_document(1.0, "a.toml")
        check_document(doc)
        (ike,) = doc["ike_sas"]
        assert (ike["name"], ike["state"], ike["initiator"]) == ("site", "ESTABLISHED", True)
        assert ike["remote_addr"] == f"{B}:4500" and ike["established"] is not None
        (child,) = ike["child_sas"]
        assert (child["name"], child["transform"], child["packets_in"]) == ("net", "aes128gcm16", 7)
        assert child["remote_ts"] == ["198.19.2.0/24"]
        counters = doc["daemon"].get("counters")
        assert counters is not None and counters["ike_sas_up"] == 1
        assert counters["child_sas_installed"] == 1 and "dataplane" not in doc["daemon"]
        assert child["rekey_at"] is not None  # rekey_time defaults to an hour
        assert PSK not in repr(doc)

    asyncio.run(scenario())


def test_wrong_psk_installs_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        a, b, dp_a, dp_b, _ = make_pair(
            tmp_path, loop, *conf(psk_b="a different secret, just as long")
        )
        b.start()
        a.start()
        await settle(lambda: not a.sas)  # the initiator gives up on AUTHENTICATION_FAILED
        assert not dp_a.sas and not dp_b.sas
        assert a.counters.ike_sas_up == 0

    asyncio.run(scenario())


def test_garbage_datagrams_are_counted(tmp_path: Path) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        _, a, _, _, _ = make_pair(tmp_path, loop, *conf())  # a responder only
        a.start()
        for data in (b"", b"\x01" * 10, bytes(27), b"\xff" * 200):
            a.datagram_received(data, (A, 500), 500)
        assert a.counters.datagrams_in == 4
        assert a.counters.malformed >= 3
        assert not a.sas

    asyncio.run(scenario())


UP_ERRORS = {
    "short psk": ('psk = "' + PSK + '"', 'psk = "short"', ["connection[0].psk", "at least 16"]),
    "bad id": (f'remote_id = "{B}"', 'remote_id = "%any"', ["connection[0].remote_id"]),
    "bad proposal": (
        'proposals = "aes128gcm16-prfsha256-x25519"',
        'proposals = "aes128gcm16-prfsha256"',
        ["connection[0].proposals", "key exchange"],
    ),
    "bad esp": ('esp_proposals = "aes128gcm16"', 'esp_proposals = "des"', ["esp_proposals"]),
    "no child": ("[[connection.child]]", "[[connection.kid]]", ["connection[0]"]),
    "bad remote": (f'remote = "{B}"', 'remote = "b.example"', ["connection[0].remote"]),
    "unknown key": ('name = "site"', 'name = "site"\nauto = "start"', ["unknown key 'auto'"]),
    "unknown auth": (f'psk = "{PSK}"', 'auth = "eap"', ["connection[0].auth", "'eap'"]),
    "missing cert": (
        f'psk = "{PSK}"',
        'auth = "pubkey"\ncert = "nope.crt"\nkey = "nope.key"\ncacerts = ["ca.crt"]',
        ["connection[0].cert", "cannot load", "nope.crt"],
    ),
    "negative cookie_threshold": (
        "[interface]\n",
        "[interface]\ncookie_threshold = -1\n",
        ["interface.cookie_threshold"],
    ),
    "zero half_open_limit": (
        "[interface]\n",
        "[interface]\nhalf_open_limit = 0\n",
        ["interface.half_open_limit"],
    ),
    "negative rekey_time": (
        'esp_proposals = "aes128gcm16"',
        'esp_proposals = "aes128gcm16"\nrekey_time = -1',
        ["connection[0].child[0].rekey_time", "out of range"],
    ),
    "bad duration": (
        'esp_proposals = "aes128gcm16"',
        'esp_proposals = "aes128gcm16"\nrekey_time = "soon"',
        ["connection[0].child[0].rekey_time", "not a duration"],
    ),
    "bool duration": (
        'esp_proposals = "aes128gcm16"',
        'esp_proposals = "aes128gcm16"\nrekey_time = true',
        ["connection[0].child[0].rekey_time", "number of seconds"],
    ),
    "life before rekey": (
        'esp_proposals = "aes128gcm16"',
        'esp_proposals = "aes128gcm16"\nrekey_time = 60\nlife_time = 30',
        ["connection[0].child[0].life_time", "must come after rekey_time"],
    ),
    "rand too big": (
        'esp_proposals = "aes128gcm16"',
        'esp_proposals = "aes128gcm16"\nrekey_time = 60\nrand_time = 60',
        ["connection[0].child[0].rand_time", "less than the rekey time"],
    ),
    "bad bytes": (
        'esp_proposals = "aes128gcm16"',
        'esp_proposals = "aes128gcm16"\nrekey_bytes = "lots"',
        ["connection[0].child[0].rekey_bytes", "not a count"],
    ),
    "negative packets": (
        'esp_proposals = "aes128gcm16"',
        'esp_proposals = "aes128gcm16"\nrekey_packets = -5',
        ["connection[0].child[0].rekey_packets", "out of range"],
    ),
    "bad dpd_action": (
        'esp_proposals = "aes128gcm16"',
        'esp_proposals = "aes128gcm16"\ndpd_action = "hold"',
        ["connection[0].child[0].dpd_action", "clear, trap, restart"],
    ),
    "bad close_action": (
        'esp_proposals = "aes128gcm16"',
        'esp_proposals = "aes128gcm16"\nclose_action = "restart"',
        ["connection[0].child[0].close_action", "none, trap, start"],
    ),
    "bad start_action": (
        'esp_proposals = "aes128gcm16"',
        'esp_proposals = "aes128gcm16"\nstart_action = "route"',
        ["connection[0].child[0].start_action", "start, trap, none"],
    ),
    "ike over_time zero": (
        'proposals = "aes128gcm16-prfsha256-x25519"',
        'proposals = "aes128gcm16-prfsha256-x25519"\nrekey_time = "1h"\nover_time = 0',
        ["connection[0].over_time", "must come after"],
    ),
    "ike rand too big": (
        'proposals = "aes128gcm16-prfsha256-x25519"',
        'proposals = "aes128gcm16-prfsha256-x25519"\nrekey_time = 10\nrand_time = 20',
        ["connection[0].rand_time", "less than"],
    ),
    "bad reauth_time": (
        'proposals = "aes128gcm16-prfsha256-x25519"',
        'proposals = "aes128gcm16-prfsha256-x25519"\nreauth_time = "1w"',
        ["connection[0].reauth_time", "not a duration"],
    ),
    "bad unique": (
        'proposals = "aes128gcm16-prfsha256-x25519"',
        'proposals = "aes128gcm16-prfsha256-x25519"\nunique = "yes"',
        ["connection[0].unique", "no, never, keep, replace"],
    ),
    "bad pool": (
        'proposals = "aes128gcm16-prfsha256-x25519"',
        'proposals = "aes128gcm16-prfsha256-x25519"\npool = ["198.19.100.1/24"]',
        ["connection[0].pool", "host bits set"],
    ),
    "bad dns": (
        'proposals = "aes128gcm16-prfsha256-x25519"',
        'proposals = "aes128gcm16-prfsha256-x25519"\ndns = ["resolver"]',
        ["connection[0].dns", "not an IP address"],
    ),
    "two vips of a family": (
        'proposals = "aes128gcm16-prfsha256-x25519"',
        'proposals = "aes128gcm16-prfsha256-x25519"\nvips = ["0.0.0.0", "198.19.100.7"]',
        ["connection[0].vips", "one address of each IP version"],
    ),
    "bad keepalive": (
        'name = "espfast0"',
        'name = "espfast0"\nkeepalive = -1',
        ["interface.keepalive"],
    ),
    "bad resolver": (
        'name = "espfast0"',
        'name = "espfast0"\nresolver = "dnsmasq"',
        ["interface.resolver", "one of auto, resolvconf"],
    ),
    "bad mobike": (
        'proposals = "aes128gcm16-prfsha256-x25519"',
        'proposals = "aes128gcm16-prfsha256-x25519"\nmobike = "maybe"',
        ["connection[0].mobike"],
    ),
    "short dpd_timeout": (
        'proposals = "aes128gcm16-prfsha256-x25519"',
        'proposals = "aes128gcm16-prfsha256-x25519"\ndpd_timeout = 0.1',
        ["connection[0].dpd_timeout", "too short"],
    ),
}


@pytest.mark.parametrize("case", sorted(UP_ERRORS))
def test_up_config_errors(tmp_path: Path, case: str) -> None:
    old, new, words = UP_ERRORS[case]
    text = conf()[0]
    assert old in text
    with pytest.raises(ConfigError) as exc:
        load_up(write_private(tmp_path / "a.toml", text.replace(old, new, 1)))
    message = str(exc.value)
    assert PSK not in message
    for word in words:
        assert word in message, (word, message)


def test_up_config_mobility_keys(tmp_path: Path) -> None:
    """keepalive (seconds between NAT keepalives, strongSwan's keep_alive) and mobike
    (RFC 4555, on by default as in strongSwan)."""
    text = conf()[0]
    cfg = load_up(write_private(tmp_path / "a.toml", text))
    assert cfg.interface.keepalive == 20 and cfg.connections[0].ike.mobike
    text = text.replace('name = "espfast0"', 'name = "espfast0"\nkeepalive = 0', 1).replace(
        'proposals = "aes128gcm16-prfsha256-x25519"',
        'proposals = "aes128gcm16-prfsha256-x25519"\nmobike = false',
        1,
    )
    cfg = load_up(write_private(tmp_path / "b.toml", text))
    assert cfg.interface.keepalive == 0 and not cfg.connections[0].ike.mobike


def test_up_config_trap_needs_a_remote(tmp_path: Path) -> None:
    text = conf()[1].replace(
        'esp_proposals = "aes128gcm16"', 'esp_proposals = "aes128gcm16"\ndpd_action = "restart"'
    )
    with pytest.raises(ConfigError, match=r"child\[0\]\.dpd_action.*needs the connection's remote"):
        load_up(write_private(tmp_path / "b.toml", text))


def test_up_config_virtual_ips(tmp_path: Path) -> None:
    """A gateway's pool makes its children's remote_ts default to it; a client's vips
    make local_ts default to anywhere of that family."""
    import ipaddress

    gw, client = conf()[1], conf()[0]
    gw = gw.replace('remote_ts = ["198.19.1.0/24"]\n', "").replace(
        'proposals = "aes128gcm16-prfsha256-x25519"\n',
        'proposals = "aes128gcm16-prfsha256-x25519"\npool = ["198.19.100.0/24", '
        '"2001:2:0:100::/64"]\ndns = ["198.19.2.53"]\n',
    )
    client = client.replace('local_ts = ["198.19.1.0/24"]\n', "").replace(
        'proposals = "aes128gcm16-prfsha256-x25519"\n',
        'proposals = "aes128gcm16-prfsha256-x25519"\nvips = ["0.0.0.0", "::"]\n',
    )
    (g,) = load_up(write_private(tmp_path / "gw.toml", gw)).connections
    (c,) = load_up(write_private(tmp_path / "rw.toml", client)).connections
    assert [str(n) for n in g.ike.pool] == ["198.19.100.0/24", "2001:2:0:100::/64"]
    assert g.ike.dns == (ipaddress.ip_address("198.19.2.53"),)
    assert [n for t in g.ike.children[0].remote_ts for n in t.networks()] == list(g.ike.pool)
    assert [str(v) for v in c.ike.vips] == ["0.0.0.0", "::"]
    assert [str(n) for t in c.ike.children[0].local_ts for n in t.networks()] == [
        "0.0.0.0/0",
        "::/0",
    ]


def test_up_config_lifetimes(tmp_path: Path) -> None:
    text = (
        conf()[0]
        .replace(
            'proposals = "aes128gcm16-prfsha256-x25519"\n',
            'proposals = "aes128gcm16-prfsha256-x25519"\nrekey_time = "5s"\nreauth_time = "1m"\n'
            "dpd_timeout = 4.1\n",
        )
        .replace(
            'esp_proposals = "aes128gcm16"\n',
            'esp_proposals = "aes128gcm16"\nrekey_time = 2\nlife_time = "3s"\nrekey_bytes = "2M"\n'
            'rekey_packets = 1000\nstart_action = "trap"\ndpd_action = "restart"\n'
            'close_action = "start"\n',
        )
    )
    (conn,) = load_up(write_private(tmp_path / "a.toml", text)).connections
    (child,) = conn.ike.children
    assert child.lifetime == Lifetime(2.0, 3.0, 1.0, rekey_bytes=2 << 20, rekey_packets=1000)
    assert (child.dpd_action, child.close_action) == ("restart", "start")
    assert conn.children_to("trap") == ["net"] and conn.children_to("start") == []
    # IKE: over_time 10 % of the longer of rekey and reauth; rand_time = over_time, but at
    # most half the rekey time.
    assert conn.ike.lifetime == Lifetime(5.0, 11.0, 2.5, reauth_time=60.0)
    assert conn.ike.retransmit_timeout == pytest.approx(0.1, rel=0.01)
    # Defaults: strongSwan's.
    (default,) = load_up(write_private(tmp_path / "b.toml", conf()[0])).connections
    life = default.ike.children[0].lifetime
    assert (life.rekey_time, life.life_time, life.rand_time) == pytest.approx((3600, 3960, 360))
    assert default.ike.lifetime.rekey_time == 14400.0 and default.ike.lifetime.life_time == 15840.0
    assert default.children_to("start") == ["net"]


def assert_mirrored(dp_a: FakeDataplane, dp_b: FakeDataplane) -> None:
    assert len(dp_a.sas) == len(dp_b.sas) == 2
    for (spi, direction), sa in dp_a.sas.items():
        other = Direction.IN if direction is Direction.OUT else Direction.OUT
        mirror = dp_b.sas[(spi, other)]
        assert (sa.enc_key, sa.integ_key) == (mirror.enc_key, mirror.integ_key)


def test_child_sa_is_rekeyed_after_rekey_time(tmp_path: Path) -> None:
    text_a, text_b = conf()
    text_a = text_a.replace(
        'esp_proposals = "aes128gcm16"\n', 'esp_proposals = "aes128gcm16"\nrekey_time = 1\n'
    )

    async def scenario() -> None:
        a, b, dp_a, dp_b, _ = make_pair(tmp_path, asyncio.get_running_loop(), text_a, text_b)
        a.rekey_grace = b.rekey_grace = 0.1
        b.start()
        a.start()
        await settle(lambda: len(dp_a.sas) == 2 and len(dp_b.sas) == 2)
        first = set(dp_a.sas)
        # After about a second a rekeys (CREATE_CHILD_SA with REKEY_SA); both sides swap to
        # the new SAs, the old inbound ones linger rekey_grace, then only the new are left.
        await settle(lambda: a.counters.child_sas_rekeyed == b.counters.child_sas_rekeyed == 1)
        await settle(lambda: len(dp_a.sas) == 2 and len(dp_b.sas) == 2)
        assert not first & set(dp_a.sas)
        assert_mirrored(dp_a, dp_b)
        # a, who rekeyed, deleted the old Child SA (RFC 7296 §2.8): one left on each side.
        (sa_a,), (sa_b,) = a.sas, b.sas
        await settle(lambda: len(sa_a.children) == len(sa_b.children) == 1)
        await a.shutdown()

    asyncio.run(scenario())


def with_options(text: str, ike: str = "", child: str = "") -> str:
    """``text`` with connection-level ``ike`` and child-level ``child`` lines added."""
    ike_anchor = 'proposals = "aes128gcm16-prfsha256-x25519"\n'
    child_anchor = 'esp_proposals = "aes128gcm16"\n'
    return text.replace(ike_anchor, ike_anchor + ike, 1).replace(child_anchor, child_anchor + child)


def in_use(dp: FakeDataplane) -> int | None:
    """The outbound SPI the dataplane sends on: the newest outbound SA (as the real one)."""
    outs = [spi for (spi, d) in dp.sas if d is Direction.OUT]
    return outs[-1] if outs else None


async def always_receivable(dp_a: FakeDataplane, dp_b: FakeDataplane, seconds: float) -> None:
    """For ``seconds``, sampled every 2 ms: each side sends on an SA the other can receive."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        for src, dst in ((dp_a, dp_b), (dp_b, dp_a)):
            spi = in_use(src)
            assert spi is not None and (spi, Direction.IN) in dst.sas, (src.me, spi)
        await asyncio.sleep(0.002)


@pytest.mark.parametrize("rand", ["0", "0.5"])
def test_rekeys_never_leave_a_gap(tmp_path: Path, rand: str) -> None:
    """Both sides rekey every second (rand_time 0: always at the same moment, a collision
    each time, RFC 7296 §2.8.1). Sampled every few milliseconds: each side always sends on
    an SA the other can receive (make-before-break), and at the end one Child SA is left."""
    child = f"rekey_time = 1\nlife_time = 3\nrand_time = {rand}\n"
    text_a, text_b = (with_options(t, child=child) for t in conf())

    async def scenario() -> None:
        a, b, dp_a, dp_b, _ = make_pair(tmp_path, asyncio.get_running_loop(), text_a, text_b)
        a.rekey_grace = b.rekey_grace = 0.1
        b.start()
        a.start()
        await settle(lambda: len(dp_a.sas) == 2 and len(dp_b.sas) == 2)
        await always_receivable(dp_a, dp_b, 4.5)
        assert a.counters.child_sas_rekeyed >= 3 and b.counters.child_sas_rekeyed >= 3
        assert a.counters.event_errors == b.counters.event_errors == 0
        # Left alone, the rekeys settle: one Child SA on each side, the same one.
        (sa_a,), (sa_b,) = a.sas, b.sas
        for sa in (sa_a, sa_b):
            for c in sa.children.values():
                c.rekey_at = None
        await settle(lambda: len(sa_a.children) == len(sa_b.children) == 1, timeout=5)
        await settle(lambda: len(dp_a.sas) == len(dp_b.sas) == 2, timeout=5)
        assert_mirrored(dp_a, dp_b)
        await a.shutdown()

    asyncio.run(scenario())


def test_a_lost_rekey_answer_leaves_no_gap(tmp_path: Path) -> None:
    """The answer to a's CREATE_CHILD_SA is lost: b, the rekey's responder, has the new
    keys, a gets them only from b's cached answer to its retransmission (first after
    about 1.5 s here). b must keep sending on the old SA until a has the new one."""
    child = "rekey_time = 1\nlife_time = 5\nrand_time = 0.1\n"  # (default life: 1.1 s)
    text_a = with_options(conf()[0], ike="dpd_timeout = 60\n", child=child)

    async def scenario() -> None:
        a, b, dp_a, dp_b, _ = await started_pair(tmp_path, text_a)
        a.rekey_grace = b.rekey_grace = 0.1
        dp_b.drop = 1  # b's next IKE datagram: its answer to a's first rekey
        await always_receivable(dp_a, dp_b, 3.5)
        assert dp_b.drop == 0 and a.counters.child_sas_rekeyed >= 1
        assert a.count_ike().ike_retransmits >= 1
        assert b.count_ike().ike_requests_answered_from_cache >= 1
        assert a.counters.event_errors == b.counters.event_errors == 0
        await a.shutdown()

    asyncio.run(scenario())


def test_reauthentication_keeps_the_tunnel(tmp_path: Path) -> None:
    """reauth_time: a new IKE SA (IKE_SA_INIT + IKE_AUTH) and its Child SA come up before
    the old ones go (make-before-break); each side always sends on an SA the other has."""
    text_a = with_options(conf()[0], ike="reauth_time = 1\nrekey_time = 0\n")

    async def scenario() -> None:
        a, b, dp_a, dp_b, _ = await started_pair(tmp_path, text_a)
        a.rekey_grace = b.rekey_grace = 0.1
        first = a.sas[0].spi_i
        await always_receivable(dp_a, dp_b, 2.5)
        assert a.counters.ike_sas_reauthenticated >= 1
        await settle(lambda: len(a.sas) == len(b.sas) == 1)
        assert a.sas[0].spi_i != first and a.counters.ike_sas_down == 0
        await a.shutdown()

    asyncio.run(scenario())


async def started_pair(
    tmp_path: Path, text_a: str
) -> tuple[Daemon, Daemon, FakeDataplane, FakeDataplane, list[object]]:
    """a (``text_a``) and b (the usual responder) with their Child SA up; the last item
    collects the routes a withdraws."""
    a, b, dp_a, dp_b, _ = make_pair(tmp_path, asyncio.get_running_loop(), text_a, conf()[1])
    removed: list[object] = []
    a.remove_routes = removed.extend
    b.start()
    a.start()
    await settle(lambda: len(dp_a.sas) == 2 and len(dp_b.sas) == 2)
    return a, b, dp_a, dp_b, removed


@pytest.mark.parametrize("action", ["none", "start", "trap"])
def test_close_action(tmp_path: Path, action: str) -> None:
    """b deletes the Child SA (INFORMATIONAL { D(ESP) }): a honours it (the SAs go), then
    acts on its close_action: none -> stays down (route withdrawn), start -> negotiated
    again at once, trap -> route kept, negotiated again on traffic."""
    text_a = with_options(conf()[0], child=f'close_action = "{action}"\n')

    async def scenario() -> None:
        a, b, dp_a, dp_b, removed = await started_pair(tmp_path, text_a)
        (sa_b,) = b.sas
        (spi_b,) = sa_b.children
        sa_b.delete_child(spi_b, b.loop.time())
        b._pump()
        if action == "start":
            await settle(lambda: a.counters.child_sas_removed == 1 and len(dp_a.sas) == 2)
            assert_mirrored(dp_a, dp_b)
        else:
            await settle(lambda: not dp_a.sas and not dp_b.sas)
            await asyncio.sleep(0.2)
            assert not dp_a.sas and len(a.sas) == 1  # the IKE SA stays
            assert removed == ([] if action == "trap" else [ipaddress.ip_network("198.19.2.0/24")])
        if action == "trap":
            a.traffic_without_sa([ipaddress.ip_address("198.19.2.1")])
            await settle(lambda: len(dp_a.sas) == 2 and len(dp_b.sas) == 2)
        await a.shutdown()

    asyncio.run(scenario())


@pytest.mark.parametrize("action", ["clear", "restart"])
def test_dead_peer_detection(tmp_path: Path, action: str) -> None:
    """dpd_action = clear: the SAs and routes go, nothing is restarted; restart: a keeps
    initiating and the tunnel is back once the path is."""
    text_a = with_options(
        conf()[0], "dpd_delay = 1\ndpd_timeout = 0.6\n", f'dpd_action = "{action}"\n'
    )

    async def scenario() -> None:
        a, _, dp_a, dp_b, removed = await started_pair(tmp_path, text_a)
        await asyncio.sleep(1.5)  # a liveness check answered: still up
        assert len(dp_a.sas) == 2 and a.counters.ike_sas_down == 0
        a.retry_delay = 0.2
        dp_a.up = dp_b.up = False  # the path dies
        await settle(lambda: a.counters.ike_sas_down >= 1, timeout=5)
        assert not dp_a.sas
        assert removed == [ipaddress.ip_network("198.19.2.0/24")]  # routes withdrawn
        assert a.count_ike().ike_retransmits >= 2  # the liveness check, sent again in vain
        dp_a.up = dp_b.up = True
        if action == "clear":
            await asyncio.sleep(1.5)
            assert a.counters.ike_sas_up == 1 and not dp_a.sas and not a.sas
        else:
            await settle(lambda: a.counters.ike_sas_up >= 2 and len(dp_a.sas) == 2, timeout=8)
        await a.shutdown()
        assert not a.sas and not dp_a.sas

    asyncio.run(scenario())


def test_trap_negotiates_on_traffic(tmp_path: Path) -> None:
    """start_action = trap: nothing is negotiated until the dataplane reports a packet
    for the trapped prefix that found no SA; the route into the TUN device is there from
    the start."""
    text_a = with_options(conf()[0], child='start_action = "trap"\n')

    async def scenario() -> None:
        a, b, dp_a, dp_b, routes = make_pair(
            tmp_path, asyncio.get_running_loop(), text_a, conf()[1]
        )
        a.traffic_interval = b.traffic_interval = 0.05
        b.start()
        a.start()
        assert routes == [ipaddress.ip_network("198.19.2.0/24")]
        await asyncio.sleep(0.3)
        assert not dp_a.sas and not a.sas and a.counters.datagrams_out == 0
        a.traffic_without_sa([ipaddress.ip_address("198.19.3.1")])  # not trapped
        await asyncio.sleep(0.3)
        assert not a.sas
        a.traffic_without_sa([ipaddress.ip_address("198.19.2.7")])  # the dataplane's notice
        await settle(lambda: len(dp_a.sas) == 2 and len(dp_b.sas) == 2)
        assert a.counters.traps_acquired >= 1 and a.counters.ike_sas_up == 1
        await a.shutdown()

    asyncio.run(scenario())


def test_rekey_after_rekey_packets(tmp_path: Path) -> None:
    """The dataplane's counters reach the control plane: rekey_packets triggers a rekey."""
    text_a = with_options(conf()[0], child="rekey_packets = 1000\n")

    async def scenario() -> None:
        a, b, dp_a, dp_b, _ = make_pair(tmp_path, asyncio.get_running_loop(), text_a, conf()[1])
        a.traffic_interval = b.traffic_interval = 0.05
        a.rekey_grace = b.rekey_grace = 0.1
        b.start()
        a.start()
        await settle(lambda: len(dp_a.sas) == 2 and len(dp_b.sas) == 2)
        await asyncio.sleep(0.3)
        assert a.counters.child_sas_rekeyed == 0
        dp_a.move((10**6, 600))  # 600 in + 600 out
        await settle(
            lambda: a.counters.child_sas_rekeyed >= 1 and b.counters.child_sas_rekeyed >= 1
        )
        await a.shutdown()

    asyncio.run(scenario())


def test_idle_tunnel_is_not_read_until_traffic_moves(tmp_path: Path) -> None:
    """Nothing moves: after a read that saw no change, the daemon asks the dataplane for a
    notice, reads once more, and then stops reading; the notice of a packet starts the
    reads again, and what they find is acted on (here rekey_packets)."""
    text_a = with_options(conf()[0], child="rekey_packets = 1000\n")

    async def scenario() -> None:
        a, b, dp_a, dp_b, _ = make_pair(tmp_path, asyncio.get_running_loop(), text_a, conf()[1])
        a.traffic_interval = b.traffic_interval = 0.02
        a.rekey_grace = b.rekey_grace = 0.1
        dp_a.flowing = False
        b.start()
        a.start()
        await settle(lambda: len(dp_a.sas) == 2 and len(dp_b.sas) == 2)
        await settle(lambda: dp_a.watching and a._traffic is None)
        reads = dp_a.reads
        await asyncio.sleep(0.3)  # 15 intervals
        assert dp_a.reads == reads and a.counters.child_sas_rekeyed == 0
        dp_a.move((10**6, 600))  # 600 in + 600 out: past rekey_packets
        await settle(
            lambda: a.counters.child_sas_rekeyed >= 1 and b.counters.child_sas_rekeyed >= 1
        )
        assert dp_a.reads > reads
        await a.shutdown()

    asyncio.run(scenario())


def test_certificate_authentication(tmp_path: Path) -> None:
    from espfast.cli import main

    pki = tmp_path / "pki"
    assert main(["pki", "ca", "--out", str(pki)]) == 0
    for name in ("a", "b"):
        assert main(["pki", "issue", "--ca", str(pki), "--id", f"{name}.example.test",
                     "--name", name, "--out", str(pki)]) == 0  # fmt: skip
    texts = []
    for me, peer, text in zip("ab", "ba", conf(), strict=True):
        auth = (
            'auth = "pubkey"\n'
            f'cert = "{pki / me}.crt"\nkey = "{pki / me}.key"\ncacerts = ["{pki}/ca.crt"]\n'
        )
        text = text.replace(f'psk = "{PSK}"\n', auth)
        text = text.replace(
            f'local_id = "{A if me == "a" else B}"', f'local_id = "{me}.example.test"'
        )
        text = text.replace(
            f'remote_id = "{B if me == "a" else A}"', f'remote_id = "{peer}.example.test"'
        )
        texts.append(text)

    async def scenario() -> None:
        a, b, dp_a, dp_b, _ = make_pair(tmp_path, asyncio.get_running_loop(), *texts)
        b.start()
        a.start()
        await settle(lambda: len(dp_a.sas) == 2 and len(dp_b.sas) == 2)
        assert_mirrored(dp_a, dp_b)

    asyncio.run(scenario())


def test_world_readable_psk_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_private(tmp_path / "a.toml", conf()[0])
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="espfast.config"):
        load_up(path)
    (record,) = caplog.records
    assert "readable by every user" in record.getMessage() and PSK not in record.getMessage()


def test_a_peer_move_reaches_a_rekeyed_outbound_sa_not_yet_in_use(tmp_path: Path) -> None:
    """The peer moves (PeerAddressChanged: MOBIKE, a NAT mapping) while a rekeyed Child
    SA's outbound half still waits for evidence that the peer has its inbound half: once
    we switch to it, it sends to the peer's new address, not to where the peer was when
    the rekey was made (charon rekeys its Child SAs right after each address update)."""

    async def scenario() -> None:
        a, b, dp_a, dp_b, _ = make_pair(tmp_path, asyncio.get_running_loop(), *conf())
        b.start()
        a.start()
        await settle(lambda: len(dp_a.sas) == 2 and len(dp_b.sas) == 2)
        moved: list[tuple[int, tuple[str, int], Direction]] = []

        def update_peer(
            spi: int, peer: tuple[str, int], *, direction: Direction = Direction.OUT,
            raw_esp: bool = False,
        ) -> None:  # fmt: skip
            moved.append((spi, peer, direction))

        dp_b.update_peer = update_peer  # type: ignore[method-assign]
        ((spi_in, child),) = b.children.items()
        inbound = dp_b.sas[(spi_in, Direction.IN)]
        outbound = dp_b.sas[(child.spi_out, Direction.OUT)]
        new = dataclasses.replace(
            child.up, spi_in=0x1111, spi_out=0x2222, exchange_initiator=False,
            enc_key_in=inbound.enc_key, integ_key_in=inbound.integ_key,
            enc_key_out=outbound.enc_key, integ_key_out=outbound.integ_key,
        )  # fmt: skip
        b._on_event(ChildSaRekeyed(child.ike_sa_id, child.up.name, spi_in, child.spi_out, new))
        assert (0x2222, Direction.OUT) not in dp_b.sas  # the peer has not used it yet
        there = ("198.18.7.9", 4500)
        b._on_event(PeerAddressChanged(child.ike_sa_id, there))
        # the SA that sends now follows at once (and the inbound ones take it from there)
        assert {(spi, peer) for spi, peer, d in moved if d is Direction.OUT} == {
            (child.spi_out, there)
        }
        assert 0x1111 in {spi for spi, _, d in moved if d is Direction.IN}
        b._switch_out(0x1111)  # the peer sent on the new inbound SA
        assert dp_b.sas[(0x2222, Direction.OUT)].peer == there
        await a.shutdown()

    asyncio.run(scenario())
