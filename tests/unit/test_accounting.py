"""RADIUS accounting (espfast/accounting.py): Start, Interim-Update on its interval and
Stop, with the counts of Child SAs still installed and of those already gone."""

from __future__ import annotations

import asyncio

from espfast.accounting import Accounting
from espfast.control.events import IkeSaUp
from espfast.control.radius import AcctStatus, Attr
from espfast.radius import RadiusConfig, RadiusServer


class FakeClient:
    def __init__(self, interim: float) -> None:
        self.cfg = RadiusConfig((RadiusServer(("198.18.5.2", 1812), b"s"),), accounting=True,
                                interim_interval=interim)  # fmt: skip
        self.sent: list[dict[int, bytes]] = []

    def account(self, attrs: list[tuple[int, bytes]]) -> None:
        self.sent.append(dict(attrs))


def _num(v: bytes) -> int:
    return int.from_bytes(v, "big")


async def _session() -> None:
    client = FakeClient(interim=0.02)
    live = {7: (5 << 32 | 10, 300, 4, 5)}
    acct = Accounting(client, asyncio.get_running_loop(), lambda i: live.get(i, (0, 0, 0, 0)))  # type: ignore[arg-type]
    up = IkeSaUp(7, "rw", "gw", "carol", ("198.18.0.1", 4500), "x",
                 peer_virtual_ips=("198.19.100.77",))  # fmt: skip
    acct.up(up)
    await asyncio.sleep(0.05)
    acct.child_gone(7, (1, 2, 3, 4))
    live.clear()
    acct.down(7, "peer")
    start, *interims, stop = client.sent
    assert _num(start[Attr.ACCT_STATUS_TYPE]) == AcctStatus.START
    assert start[Attr.USER_NAME] == b"carol" and start[Attr.FRAMED_IP_ADDRESS] == bytes(
        [198, 19, 100, 77]
    )
    assert interims and all(
        _num(i[Attr.ACCT_STATUS_TYPE]) == AcctStatus.INTERIM_UPDATE for i in interims
    )
    i = interims[0]
    assert _num(i[Attr.ACCT_INPUT_OCTETS]) == 10 and _num(i[Attr.ACCT_INPUT_GIGAWORDS]) == 5
    assert _num(stop[Attr.ACCT_STATUS_TYPE]) == AcctStatus.STOP
    assert _num(stop[Attr.ACCT_INPUT_OCTETS]) == 1 and _num(stop[Attr.ACCT_OUTPUT_PACKETS]) == 4
    assert _num(stop[Attr.ACCT_TERMINATE_CAUSE]) == 1  # User-Request
    assert len({s[Attr.ACCT_SESSION_ID] for s in client.sent}) == 1
    n = len(client.sent)
    await asyncio.sleep(0.05)
    assert len(client.sent) == n  # no interim after the Stop


def test_start_interim_stop() -> None:
    asyncio.run(_session())
