"""Virtual IP addresses for peers that ask for one (RFC 7296 §2.19, §3.15: a road-warrior
client's CFG_REQUEST for INTERNAL_IP4_ADDRESS / INTERNAL_IP6_ADDRESS in IKE_AUTH).

As strongSwan's in-memory pools do: a peer identity keeps its address across reconnects
and reauthentications (a lease), several IKE SAs of one identity share it, and an address
nobody holds any more stays leased to its identity until the pool needs it for someone
else (the longest unheld goes first). The network address (and, for IPv4 prefixes up to
/30, the broadcast address) is never handed out.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Iterator

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressPool:
    def __init__(self, networks: tuple[IPNetwork, ...],
                 exact: frozenset[IPNetwork] = frozenset()) -> None:  # fmt: skip
        """``exact``: those of ``networks`` whose every address is handed out (they
        came from a first-last range)."""
        self.networks = networks
        self.exact = exact
        self._fresh: dict[int, Iterator[IPAddress]] = {
            v: self._hosts(v) for v in {n.version for n in networks}
        }
        self._lease: dict[tuple[bytes, int], IPAddress] = {}  # (identity, family) -> address
        self._owner: dict[IPAddress, bytes] = {}  # address -> identity it is leased to
        self._holders: dict[IPAddress, set[int]] = {}  # address -> IKE SA ids using it
        self._unheld: OrderedDict[IPAddress, None] = OrderedDict()  # leased, unused, oldest 1st

    def _hosts(self, version: int) -> Iterator[IPAddress]:
        for net in self.networks:
            if net.version != version:
                continue
            if net in self.exact:
                yield from net
                continue
            for addr in net:
                if addr == net.network_address and net.num_addresses > 1:
                    continue
                if version == 4 and net.num_addresses > 2 and addr == net.broadcast_address:
                    continue
                yield addr

    def acquire(self, identity: bytes, version: int, holder: int) -> IPAddress | None:
        """An address of IP ``version`` for ``identity``, held by IKE SA ``holder``
        (its own lease if it has one); None when the pool has none left."""
        addr = self._lease.get((identity, version))
        if addr is None:
            # (an address claimed for someone is not fresh any more)
            addr = next((a for a in self._fresh.get(version, iter(())) if a not in self._owner),
                        None)  # fmt: skip
            if addr is None:  # reuse the longest unheld lease of this family
                addr = next((a for a in self._unheld if a.version == version), None)
                if addr is None:
                    return None
                del self._lease[(self._owner[addr], version)]
            self._lease[(identity, version)] = addr
            self._owner[addr] = identity
        self._unheld.pop(addr, None)
        self._holders.setdefault(addr, set()).add(holder)
        return addr

    def claim(self, addr: IPAddress, identity: bytes, holder: int) -> IPAddress | None:
        """``addr`` for ``identity`` (an address an authentication server assigned it),
        held by IKE SA ``holder``: None if it lies outside the pool or another identity's
        IKE SA holds it. It becomes the identity's lease."""
        if not any(addr in n for n in self.networks):
            return None
        owner = self._owner.get(addr)
        if owner is not None and owner != identity:
            if self._holders.get(addr):
                return None
            del self._lease[(owner, addr.version)]  # unheld: reassigned
        old = self._lease.get((identity, addr.version))
        if old is not None and old != addr and not self._holders.get(old):
            del self._owner[old]
            self._unheld.pop(old, None)
        self._lease[(identity, addr.version)] = addr
        self._owner[addr] = identity
        self._unheld.pop(addr, None)
        self._holders.setdefault(addr, set()).add(holder)
        return addr

    def release(self, holder: int) -> None:
        """IKE SA ``holder`` is gone: its addresses stay leased to their identities."""
        for addr, holders in list(self._holders.items()):
            holders.discard(holder)
            if not holders:
                del self._holders[addr]
                self._unheld[addr] = None

    def held(self) -> dict[IPAddress, bytes]:
        """Addresses in use, with the identity each is leased to."""
        return {a: self._owner[a] for a in self._holders}
