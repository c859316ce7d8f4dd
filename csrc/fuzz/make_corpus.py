"""Writes the seed corpus of the C fuzzers (csrc/fuzz/corpus/<harness>/): real packets.

ESP comes from our own dataplane (espfast.dataplane.EspSa, the C code the workers run)
under the fixed keys of fuzz_decap.c; inner packets, TCP segment runs and TSO super-packets
are built with scapy, checksums and all. The input layouts are described at the top of
fuzz_decap.c and fuzz_offload.c. Run from the repository root:

    .venv/bin/python csrc/fuzz/make_corpus.py
"""

from __future__ import annotations

import struct
import sys
from ipaddress import ip_network
from pathlib import Path

from scapy.layers.inet import IP, TCP, UDP, IPOption_NOP
from scapy.layers.inet6 import IPv6

from espfast.dataplane import Direction, EspSa, SaParams, Transform

OUT = Path(__file__).resolve().parent / "corpus"
SPI = 0x1000
ANY = (ip_network("0.0.0.0/0"), ip_network("::/0"))
A4, B4, A6, B6 = "198.19.1.1", "198.19.2.1", "2001:2:0:1::1", "2001:2:0:2::1"


def fixed_key(length: int, mul: int, add: int) -> bytes:
    return bytes((mul * i + add) & 0xFF for i in range(length))


def inner_packets() -> list[bytes]:
    return [
        bytes(IP(src=A4, dst=B4, id=1) / UDP(sport=1000, dport=2000) / (b"u" * 40)),
        bytes(IPv6(src=A6, dst=B6) / TCP(sport=40000, dport=5201, flags="PA") / (b"t" * 100)),
        bytes(IP(src=A4, dst=B4, id=2) / TCP(sport=40000, dport=5201, flags="A") / (b"x" * 7)),
    ]


def record(kind: int, body: bytes) -> bytes:
    return struct.pack("!BH", kind, len(body)) + body


def decap_head(
    transform: Transform, esn: bool, seal: bool, window: int, floor: int, narrow: bool = False
) -> bytes:
    index = list(Transform).index(transform)
    flags = int(esn) | int(seal) << 1 | int(narrow) << 2
    return struct.pack("!BBHQ", index, flags, window - 1, floor)


def raw_seed(transform: Transform, esn: bool) -> bytes:
    """Four packets from an outbound EspSa (the last one a replay of the first), then a
    restart and the second one again."""
    enc_len, integ_len = transform.key_lengths
    start = 2**32 - 2 if esn else 0
    sa = EspSa(
        SaParams(
            spi=SPI, direction=Direction.OUT, transform=transform,
            enc_key=fixed_key(enc_len, 7, 1), integ_key=fixed_key(integ_len, 11, 3),
            local_ts=ANY, remote_ts=ANY, esn=esn,
        ),
        initial_seq=start,
    )  # fmt: skip
    esp = [sa.encap(p) for p in inner_packets()]
    body = b"".join(record(0, e) for e in esp) + record(0, esp[0]) + record(1, esp[1])
    return decap_head(transform, esn, False, 64, start) + body


def trailer(inner: bytes, nh: int) -> bytes:
    pad = (-(len(inner) + 2)) % 4
    return inner + bytes(range(1, pad + 1)) + bytes([pad, nh])


def narrow_seed(transform: Transform) -> bytes:
    """Narrow selectors (fuzz_decap.c): packets inside them, and from outside them."""
    v4, v6, _ = inner_packets()
    outside = bytes(IP(src="198.19.3.1", dst=B4) / UDP(sport=1, dport=2) / b"o")
    wrong6 = bytes(IPv6(src=A6, dst="2001:2:0:9::1") / UDP(sport=1, dport=2) / b"o")
    plain = [trailer(v4, 4), trailer(outside, 4), trailer(v6, 41), trailer(wrong6, 41)]
    body = b"".join(record(0, struct.pack("!Q", 10 + i) + p) for i, p in enumerate(plain))
    return decap_head(transform, False, True, 64, 9, narrow=True) + body


def seal_seed(transform: Transform, esn: bool) -> bytes:
    """ESP plaintexts to seal at chosen numbers: in order, out of order, a replay, a
    dummy packet, bad padding, an IPv6 packet, then a restart and older numbers."""
    base = 2**32 + 100 if esn else 100
    v4, v6, v4b = inner_packets()
    plain = [
        (base + 1, trailer(v4, 4)),
        (base + 3, trailer(v6, 41)),
        (base + 2, trailer(v4b, 4)),
        (base + 2, trailer(v4b, 4)),
        (base + 4, trailer(b"", 59)),
        (base + 5, v4 + b"\x01\x03\x02\x04"),
    ]
    body = b"".join(record(0, struct.pack("!Q", s) + p) for s, p in plain)
    body += record(1, struct.pack("!Q", base + 3) + trailer(v6, 41))
    body += record(0, struct.pack("!Q", base + 6) + trailer(v4, 4))
    return decap_head(transform, esn, True, 32, base) + body


def pseudo_sum(pkt: bytes, v6: bool, proto: int) -> int:
    """The pseudo-header sum the kernel leaves in a NEEDS_CSUM packet's field."""
    if v6:
        words = pkt[8:40] + struct.pack("!IxxxB", len(pkt) - 40, proto)
    else:
        words = pkt[12:20] + struct.pack("!xBH", proto, len(pkt) - 20)
    total = sum(struct.unpack(f"!{len(words) // 2}H", words))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def vnet(flags: int, gso_type: int, hdr_len: int, gso_size: int, start: int, off: int) -> bytes:
    return struct.pack("<BBHHHH", flags, gso_type, hdr_len, gso_size, start, off)


def csum_seed(pkt: bytes, v6: bool, proto: int, zero: bool = False) -> bytes:
    iphl = 40 if v6 else 20
    field = iphl + (6 if proto == 17 else 16)
    data = bytearray(pkt)
    data[field : field + 2] = struct.pack("!H", pseudo_sum(pkt, v6, proto))
    if zero:  # the last payload word makes the sum 0xffff: the complement comes out 0
        data[-2:] = b"\0\0"
        rest = sum(struct.unpack(f"!{(len(data) - iphl) // 2}H", bytes(data[iphl:])))
        while rest >> 16:
            rest = (rest & 0xFFFF) + (rest >> 16)
        data[-2:] = struct.pack("!H", 0xFFFF - rest)
    return bytes([0, 0]) + vnet(1, 0, 0, 0, iphl, field - iphl) + bytes(data)


def tcp_segments(v6: bool, n: int, size: int, flags: str = "A", seq: int = 1000) -> list[bytes]:
    opts = [("NOP", None), ("NOP", None), ("Timestamp", (12345, 777))]
    out = []
    for i in range(n):
        ip = IPv6(src=A6, dst=B6) if v6 else IP(src=A4, dst=B4, id=i, flags="DF")
        tcp = TCP(sport=40000, dport=5201, seq=seq + i * size, ack=777, flags=flags, options=opts)
        out.append(bytes(ip / tcp / bytes((i + j) & 0xFF for j in range(size))))
    return out


def gro_seed(packets: list[bytes], fixup: bool) -> bytes:
    return bytes([2, int(fixup)]) + b"".join(struct.pack("!H", len(p)) + p for p in packets)


def tso_seed(v6: bool, mss: int, payload: int, flags: str) -> bytes:
    (pkt,) = tcp_segments(v6, 1, payload, flags)
    return bytes([1, int(v6)]) + struct.pack("!H", mss) + pkt


def offload_seeds() -> dict[str, bytes]:
    v4_udp = bytes(IP(src=A4, dst=B4) / UDP(sport=4500, dport=4500) / (b"q" * 33))
    v6_udp = bytes(IPv6(src=A6, dst=B6) / UDP(sport=4500, dport=4500) / (b"q" * 32))
    v4_tcp = tcp_segments(False, 1, 300)[0]
    seeds = {
        "csum-udp4": csum_seed(v4_udp, False, 17),
        "csum-udp6": csum_seed(v6_udp, True, 17),
        "csum-udp6-zero": csum_seed(v6_udp, True, 17, zero=True),
        "csum-tcp4": csum_seed(v4_tcp, False, 6),
        "tso-v4": tso_seed(False, 1000, 3500, "PA"),
        "tso-v6": tso_seed(True, 700, 2100, "FA"),
        "gro-v4": gro_seed(tcp_segments(False, 4, 500), False),
        "gro-v6": gro_seed(tcp_segments(True, 3, 400) + tcp_segments(True, 1, 100, "PA"), False),
        "gro-fixup": gro_seed(tcp_segments(False, 3, 200), True),
    }
    # TCP header byte 12 differs (AccECN's AE, scapy's "N"): must not merge.
    ae = tcp_segments(False, 2, 500)
    ae[1] = tcp_segments(False, 2, 500, "AN")[1]
    seeds["gro-ae"] = gro_seed(ae, False)
    return seeds


def raw_seeds() -> dict[str, bytes]:
    """fuzz_raw: [mode][datagram] as a raw ESP socket hands it over (IPv4: with header)."""
    esp = bytes.fromhex("c0ffee01" "00000001") + bytes(32)
    v4 = bytes(IP(src=A4, dst=B4, proto=50) / esp)
    options = bytes(IP(src=A4, dst=B4, proto=50, options=[IPOption_NOP()] * 8) / esp)
    first = bytes(IP(src=A4, dst=B4, proto=50, flags="MF") / esp)
    return {"v4": b"\0" + v4, "v4-options": b"\0" + options, "v4-mf": b"\0" + first,
            "v4-trailing": b"\0" + v4 + bytes(8), "v6": b"\1" + esp}  # fmt: skip


def main() -> int:
    decap = {}
    for t in Transform:
        for esn in (False, True):
            decap[f"raw-{t}-{'esn' if esn else 'seq32'}"] = raw_seed(t, esn)
            if t.is_aead:
                decap[f"seal-{t}-{'esn' if esn else 'seq32'}"] = seal_seed(t, esn)
    decap["narrow-aes128gcm16"] = narrow_seed(Transform.AES128GCM16)
    for harness, seeds in (("decap", decap), ("offload", offload_seeds()), ("raw", raw_seeds())):
        directory = OUT / harness
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.iterdir():
            old.unlink()
        for name, data in seeds.items():
            (directory / name).write_bytes(data)
        print(f"{directory}: {len(seeds)} seeds, {sum(map(len, seeds.values()))} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
