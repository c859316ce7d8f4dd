"""Traffic selector narrowing (RFC 7296 §2.9) and the Child SA event."""

import pytest

from espfast.control.child_sa import ChildSa, check_subset, narrow
from espfast.control.constants import EncrId, NotifyType, ProtocolId
from espfast.control.crypto import ChildKeys
from espfast.control.errors import RemoteProtocolError
from espfast.control.events import TrafficSelector
from espfast.control.proposals import Chosen

TS = TrafficSelector.from_network


def test_narrow_intersects_and_refuses() -> None:
    assert narrow([TS("198.19.0.0/16")], [TS("198.19.1.0/24")]) == (TS("198.19.1.0/24"),)
    both = narrow([TS("198.19.1.0/24"), TS("198.19.2.0/24")], [TS("198.19.0.0/16")])
    assert both == (TS("198.19.1.0/24"), TS("198.19.2.0/24"))
    udp = TS("198.19.1.0/24", ip_protocol=17, ports=(500, 500))
    assert narrow([TS("198.19.1.0/24")], [udp]) == (udp,)
    with pytest.raises(RemoteProtocolError) as exc:
        narrow([TS("198.19.1.0/24")], [TS("198.19.2.0/24")])
    assert exc.value.notify == NotifyType.TS_UNACCEPTABLE
    with pytest.raises(RemoteProtocolError):
        narrow([TS("2001:2::/64")], [TS("198.19.0.0/16")])


def test_check_subset() -> None:
    check_subset([TS("198.19.1.128/25")], [TS("198.19.1.0/24")])
    with pytest.raises(RemoteProtocolError, match="outside"):
        check_subset([TS("198.19.0.0/16")], [TS("198.19.1.0/24")])


def test_up_event_directions() -> None:
    chosen = Chosen(ProtocolId.ESP, EncrId.AES_GCM_16, 128)
    keys = ChildKeys(b"KEYI" * 5, b"", b"KEYR" * 5, b"")
    for initiator, out_key in ((True, b"KEYI" * 5), (False, b"KEYR" * 5)):
        child = ChildSa("net", 0x1000, 0x2000, chosen, (TS("198.19.1.0/24"),),
                        (TS("198.19.2.0/24"),), initiator, keys)  # fmt: skip
        up = child.up_event(7, ("198.18.0.2", 4500))
        assert up.enc_key_out == out_key and up.transform == "aes128gcm16"
        assert (up.spi_in, up.spi_out, up.peer) == (0x1000, 0x2000, ("198.18.0.2", 4500))
        assert "KEY" not in repr(up)
        child.forget_keys()
        assert child.keys is None
