import pytest

from espfast.control.buffer import Buffer
from espfast.control.errors import RemoteProtocolError


def test_pull_push_roundtrip_and_back_patched_length() -> None:
    out = Buffer()
    out.push_uint8(1)
    with out.push_length16(1):
        out.push_uint8(0xAA)
        out.push_uint16(0)
        out.push_uint64(2**64 - 1)
    out.push_uint32(7)
    data = out.out
    assert data[:5] == bytes([1, 0xAA, 0, 11, 0xFF])
    buf = Buffer(data)
    assert buf.pull_uint8() == 1
    sub = buf.sub(11)
    assert sub.pull_uint8() == 0xAA and sub.pull_uint16() == 11 and sub.pull_uint64() == 2**64 - 1
    sub.expect_eof("block")
    assert buf.pull_uint32() == 7 and buf.eof()


def test_underflow_and_trailing_bytes_are_remote_errors() -> None:
    buf = Buffer(b"\x01\x02")
    with pytest.raises(RemoteProtocolError, match="truncated"):
        buf.pull_uint32()
    buf.pull_uint8()
    with pytest.raises(RemoteProtocolError, match="1 trailing bytes"):
        buf.expect_eof("payload")
    with pytest.raises(ValueError, match="16-bit"):
        big = Buffer()
        with big.push_length16(0):
            big.push_bytes(bytes(70000))
