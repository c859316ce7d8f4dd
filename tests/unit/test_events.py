"""Traffic selectors as ranges and prefixes (RFC 7296 §3.13.1)."""

from ipaddress import ip_address, ip_network

from espfast.control.constants import TsType
from espfast.control.events import TrafficSelector


def test_ranges_and_networks() -> None:
    ts = TrafficSelector(TsType.IPV4_ADDR_RANGE, 0, 0, 65535, ip_address("198.19.1.0"),
                         ip_address("198.19.2.255"))  # fmt: skip
    assert ts.networks() == [ip_network("198.19.1.0/24"), ip_network("198.19.2.0/24")]
    odd = TrafficSelector(TsType.IPV4_ADDR_RANGE, 6, 80, 80, ip_address("198.19.1.1"),
                          ip_address("198.19.1.3"))  # fmt: skip
    assert odd.networks() == [ip_network("198.19.1.1/32"), ip_network("198.19.1.2/31")]
    assert str(odd) == "198.19.1.1/32,198.19.1.2/31[6/80-80]"
    v6 = TrafficSelector.from_network("2001:2::/48")
    assert v6.ts_type == TsType.IPV6_ADDR_RANGE and str(v6) == "2001:2::/48"


def test_intersection() -> None:
    a = TrafficSelector.from_network("198.19.0.0/16", ports=(1000, 2000))
    b = TrafficSelector.from_network("198.19.1.0/24", ip_protocol=17, ports=(1500, 3000))
    common = a.intersect(b)
    assert common == TrafficSelector.from_network("198.19.1.0/24", 17, (1500, 2000))
    assert a.intersect(TrafficSelector.from_network("198.19.1.0/24", ports=(3000, 4000))) is None
    tcp = TrafficSelector.from_network("198.19.1.0/24", ip_protocol=6)
    assert tcp.intersect(b) is None
