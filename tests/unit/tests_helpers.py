"""Hand-built datagrams for bad-input tests."""

from espfast.control.message import HEADER_LEN


def with_critical_unknown(payload_type: int = 222) -> bytes:
    """An IKE_SA_INIT request whose only payload is an unknown one marked critical."""
    chain = bytes([0, 0x80]) + (4 + 4).to_bytes(2, "big") + b"abcd"
    header = (
        bytes.fromhex("0102030405060708") + bytes(8)
        + bytes([payload_type, 0x20, 34, 0x08]) + bytes(4)
        + (HEADER_LEN + len(chain)).to_bytes(4, "big")
    )  # fmt: skip
    return header + chain
