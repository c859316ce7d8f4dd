"""espfast.config: the static-keying config, and one clear error per kind of mistake."""

from __future__ import annotations

import ipaddress
import logging
import os
import tomllib
from pathlib import Path

import pytest

from espfast.config import ConfigError, StaticConfig, default_workers, load_static
from espfast.dataplane import Transform
from espfast.static import pair_configs, write_private

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

OUT_KEY = "00112233445566778899aabbccddeeff01020304"  # 16-byte AES key + 4-byte salt
IN_KEY = "ffeeddccbbaa99887766554433221100a0b0c0d0"
OUT2_KEY = "0123456789abcdef0123456789abcdef11223344"  # SECOND_SA's
IN2_KEY = "fedcba9876543210fedcba987654321055667788"

BASE = f"""
[interface]
name = "ef0"
addresses = ["198.19.1.1/24", "2001:2:0:1::1/64"]
mtu = 1400
listen = "198.18.0.1:4500"
workers = 2

[[sa]]
name = "main"
transform = "aes128gcm16"
esn = true
peer = "198.18.0.2"
local_ts = ["198.19.1.0/24", "2001:2:0:1::/64"]
remote_ts = ["198.19.2.0/24", "2001:2:0:2::/64"]
replay_window = 2048

[sa.out]
spi = "0xc0000001"
enc_key = "{OUT_KEY}"

[sa.in]
spi = 3221225474
enc_key = "{IN_KEY}"
"""


def load_text(tmp_path: Path, text: str, name: str = "t.toml") -> StaticConfig:
    return load_static(write_private(tmp_path / name, text))


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as exc:
        load_text(tmp_path, text)
    message = str(exc.value)
    # Whatever went wrong, no key material is ever echoed back.
    assert OUT_KEY not in message and IN_KEY not in message
    assert OUT_KEY[:16] not in message and IN_KEY[:16] not in message
    return message


def edit(old: str, new: str, text: str = BASE) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def test_base_config_parses(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, BASE)
    assert cfg.interface.name == "ef0"
    assert cfg.interface.addresses == (
        ipaddress.ip_interface("198.19.1.1/24"),
        ipaddress.ip_interface("2001:2:0:1::1/64"),
    )
    assert (cfg.interface.mtu, cfg.interface.workers) == (1400, 2)
    assert cfg.interface.listen == ("198.18.0.1", 4500)
    (sa,) = cfg.sas
    assert (sa.name, sa.transform, sa.esn, sa.replay_window) == ("main", "aes128gcm16", True, 2048)
    assert sa.peer == ("198.18.0.2", 4500)  # default port
    assert sa.remote_ts == (
        ipaddress.ip_network("198.19.2.0/24"),
        ipaddress.ip_network("2001:2:0:2::/64"),
    )
    assert sa.outbound.spi == 0xC0000001 and sa.inbound.spi == 0xC0000002
    assert sa.outbound.enc_key == bytes.fromhex(OUT_KEY)
    assert sa.inbound.enc_key == bytes.fromhex(IN_KEY)
    assert sa.inbound.integ_key == b""


def test_defaults(tmp_path: Path) -> None:
    text = BASE
    for line in ("mtu = 1400\n", 'listen = "198.18.0.1:4500"\n', "workers = 2\n"):
        text = edit(line, "", text)
    for line in ('name = "main"\n', "esn = true\n", "replay_window = 2048\n"):
        text = edit(line, "", text)
    cfg = load_text(tmp_path, text)
    assert (cfg.interface.mtu, cfg.interface.workers, cfg.interface.offload) == (
        1400,
        default_workers(),
        True,
    )
    assert cfg.interface.listen == ("0.0.0.0", 4500)
    assert (cfg.sas[0].name, cfg.sas[0].esn, cfg.sas[0].replay_window) == ("sa[0]", False, 1024)
    assert cfg.interface.duplex == (default_workers() == 1)


def test_duplex_defaults_to_one_thread_with_one_worker(tmp_path: Path) -> None:
    """One worker: one thread for both directions unless `duplex = false`; several
    workers: a thread per direction each (duplex would be refused)."""
    one = edit("workers = 2", "workers = 1", BASE)
    assert load_text(tmp_path, one).interface.duplex is True
    split = edit("workers = 2", "workers = 1\nduplex = false", BASE)
    assert load_text(tmp_path, split).interface.duplex is False
    assert load_text(tmp_path, BASE).interface.duplex is False


def test_keys_never_in_repr(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, BASE)
    text = repr(cfg)
    assert OUT_KEY not in text and IN_KEY not in text
    assert repr(bytes.fromhex(OUT_KEY)) not in text


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("static-*-a.toml")), ids=lambda p: p.name)
def test_examples_are_matching_pairs(path: Path) -> None:
    a = load_static(path)
    b = load_static(path.with_name(path.name.replace("-a.toml", "-b.toml")))
    assert len(a.sas) == len(b.sas) >= 1
    families = set()
    for sa_a, sa_b in zip(a.sas, b.sas, strict=True):
        assert sa_a.transform == sa_b.transform
        assert sa_a.outbound == sa_b.inbound and sa_a.inbound == sa_b.outbound
        assert sa_a.local_ts == sa_b.remote_ts and sa_a.remote_ts == sa_b.local_ts
        assert sa_a.peer[0] == b.interface.listen[0] and sa_b.peer[0] == a.interface.listen[0]
        families |= {n.version for n in sa_a.remote_ts}
    assert families == {4, 6}


def test_examples_cover_each_transform_family() -> None:
    transforms = {load_static(p).sas[0].transform for p in EXAMPLES.glob("static-*.toml")}
    assert any("gcm" in t for t in transforms)
    assert "chacha20poly1305" in transforms
    assert any("-sha" in t for t in transforms)


@pytest.mark.parametrize("transform", list(Transform))
def test_pair_configs_match_for_every_transform(tmp_path: Path, transform: Transform) -> None:
    text_a, text_b = pair_configs(transform, esn=True)
    a = load_text(tmp_path, text_a, "a.toml")
    b = load_text(tmp_path, text_b, "b.toml")
    assert a.sas[0].outbound == b.sas[0].inbound and a.sas[0].inbound == b.sas[0].outbound
    assert a.sas[0].outbound.spi != a.sas[0].inbound.spi
    enc_len, integ_len = transform.key_lengths
    assert len(a.sas[0].outbound.enc_key) == enc_len
    assert len(a.sas[0].outbound.integ_key) == integ_len


def test_cbc_transform_needs_integ_key(tmp_path: Path) -> None:
    text = edit('"aes128gcm16"', '"aes128-sha256"')
    text = edit(
        f'enc_key = "{OUT_KEY}"', f'enc_key = "{OUT_KEY[:32]}"\ninteg_key = "{"ab" * 32}"', text
    )
    text = edit(f'enc_key = "{IN_KEY}"', f'enc_key = "{IN_KEY[:32]}"', text)
    message = error_of(tmp_path, text)
    assert "sa[0].in" in message and "'integ_key'" in message and "missing" in message
    text = edit(
        f'enc_key = "{IN_KEY[:32]}"', f'enc_key = "{IN_KEY[:32]}"\ninteg_key = "{"cd" * 32}"', text
    )
    cfg = load_text(tmp_path, text)
    assert cfg.sas[0].inbound.integ_key == bytes.fromhex("cd" * 32)


def test_key_files(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    write_private(tmp_path / "keys" / "out.hex", OUT_KEY[:20] + "\n " + OUT_KEY[20:] + "\n")
    text = edit(f'enc_key = "{OUT_KEY}"', 'enc_key_file = "keys/out.hex"')
    cfg = load_text(tmp_path, text)
    assert cfg.sas[0].outbound.enc_key == bytes.fromhex(OUT_KEY)


# --- one clear error for each kind of mistake ---------------------------------------------

ERRORS = {
    # name: (old, new, words the message must contain)
    "missing interface": ("[interface]", "[interfacez]", ["missing required key 'interface'"]),
    "missing transform": ('transform = "aes128gcm16"\n', "", ["sa[0]", "'transform'"]),
    "missing peer": ('peer = "198.18.0.2"\n', "", ["sa[0]", "'peer'"]),
    "missing remote_ts": ('remote_ts = ["198.19.2.0/24", "2001:2:0:2::/64"]\n', "", ["remote_ts"]),
    "empty local_ts": (
        'local_ts = ["198.19.1.0/24", "2001:2:0:1::/64"]',
        "local_ts = []",
        ["sa[0].local_ts", "at least one"],
    ),
    "missing in": ("[sa.in]", "[sa.inn]", ["sa[0]", "'in'"]),
    "missing spi": ('spi = "0xc0000001"\n', "", ["sa[0].out", "'spi'"]),
    "missing key": (f'enc_key = "{OUT_KEY}"\n', "", ["sa[0].out", "'enc_key'", "enc_key_file"]),
    "bad hex": (OUT_KEY, "zz" + OUT_KEY[2:], ["sa[0].out.enc_key", "not valid hex"]),
    "odd hex": (OUT_KEY, OUT_KEY[:-1], ["sa[0].out.enc_key", "not valid hex"]),
    "short key": (OUT_KEY, OUT_KEY[:32], ["sa[0].out.enc_key", "20-byte", "has 16 bytes", "salt"]),
    "long key": (IN_KEY, IN_KEY + "00", ["sa[0].in.enc_key", "20-byte", "has 21 bytes"]),
    "integ key on aead": (
        f'enc_key = "{IN_KEY}"',
        f'enc_key = "{IN_KEY}"\ninteg_key = "00"',
        ["sa[0].in.integ_key", "AEAD"],
    ),
    "key and key file": (
        f'enc_key = "{IN_KEY}"',
        f'enc_key = "{IN_KEY}"\nenc_key_file = "x"',
        ["sa[0].in.enc_key", "not both"],
    ),
    "missing key file": (
        f'enc_key = "{IN_KEY}"',
        'enc_key_file = "nonexistent.hex"',
        ["sa[0].in.enc_key_file", "cannot read", "nonexistent.hex"],
    ),
    "unknown transform": (
        '"aes128gcm16"',
        '"aes128gcm8"',
        ["sa[0].transform", "unknown transform 'aes128gcm8'", "chacha20poly1305"],
    ),
    "unknown top key": ("[interface]", "peers = 1\n[interface]", ["unknown key 'peers'"]),
    "unknown interface key": ("mtu = 1400", "mtu = 1400\nmut = 1", ["interface", "'mut'"]),
    "unknown sa key": ("esn = true", "esn = true\nens = false", ["sa[0]", "'ens'"]),
    "unknown direction key": (
        'spi = "0xc0000001"',
        'spi = "0xc0000001"\nkey = "00"',
        ["sa[0].out", "unknown key 'key'"],
    ),
    "spi reserved": ('"0xc0000001"', '"0xff"', ["sa[0].out.spi", "reserved"]),
    "spi too big": ("3221225474", "4294967296", ["sa[0].in.spi", "out of range"]),
    "spi not a number": ('"0xc0000001"', '"c0000001"', ["sa[0].out.spi", "not a number"]),
    "spi wrong type": ('"0xc0000001"', "1.5", ["sa[0].out.spi", "a float"]),
    "prefix host bits": ('"198.19.2.0/24"', '"198.19.2.1/24"', ["remote_ts", "host bits"]),
    "prefix garbage": ('"2001:2:0:2::/64"', '"2001:2:0:2::/129"', ["remote_ts", "not a prefix"]),
    "address without prefix": ('"198.19.1.1/24"', '"198.19.1.1"', ["addresses", "prefix length"]),
    "bad peer": ('"198.18.0.2"', '"peer.example"', ["sa[0].peer", "not an IP address"]),
    "bad peer port": ('"198.18.0.2"', '"198.18.0.2:70000"', ["sa[0].peer", "1..65535"]),
    "peer family": ('"198.18.0.2"', '"[2001:2::2]:4500"', ["sa[0].peer", "IPv6", "IPv4"]),
    "mtu too small": ("mtu = 1400", "mtu = 576", ["interface.mtu", "out of range"]),
    "mtu wrong type": ("mtu = 1400", 'mtu = "1400"', ["interface.mtu", "integer"]),
    # Above what the dataplane carries without TUN TSO (csrc/api.cdef EF_INNER_MAX).
    "mtu too big": ("mtu = 1400", "mtu = 16289", ["interface.mtu", "1280..16288"]),
    # One key for both directions repeats every nonce (security issue item 12).
    "same key out and in": (IN_KEY, OUT_KEY, ["sa[0].in.enc_key", "same key as sa[0].out"]),
    "same key, other salt": (
        IN_KEY,
        OUT_KEY[:32] + "deadbeef",
        ["sa[0].in.enc_key", "same key as sa[0].out.enc_key"],
    ),
    "esn wrong type": ("esn = true", 'esn = "yes"', ["sa[0].esn", "true or false"]),
    "workers zero": ("workers = 2", "workers = 0", ["interface.workers", "out of range"]),
    "offload wrong type": ("workers = 2", "workers = 2\noffload = 1", ["interface.offload"]),
    "duplex with workers": ("workers = 2", "workers = 2\nduplex = true", ["interface.duplex"]),
    "bad ifname": ('name = "ef0"', 'name = "a-very-long-ifname0"', ["interface.name"]),
    "not toml": ("[interface]", "[interface", ["not valid TOML"]),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_bad_config_gets_one_clear_error(tmp_path: Path, case: str) -> None:
    old, new, words = ERRORS[case]
    message = error_of(tmp_path, edit(old, new))
    assert message.startswith(str(tmp_path / "t.toml") + ": ")
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)


SECOND_SA = f"""
[[sa]]
name = "second"
transform = "aes128gcm16"
peer = "198.18.0.3"
local_ts = ["198.19.1.0/24"]
remote_ts = ["198.19.3.0/24"]
[sa.out]
spi = "0xd0000001"
enc_key = "{OUT2_KEY}"
[sa.in]
spi = "0xd0000002"
enc_key = "{IN2_KEY}"
"""


def test_two_sa_pairs(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, BASE + SECOND_SA)
    assert [sa.name for sa in cfg.sas] == ["main", "second"]


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ('"0xd0000002"', '"0xc0000002"', ["sa[1].in.spi", "0xc0000002", "already used by sa[0]"]),
        ('"0xd0000001"', "3221225473", ["sa[1].out.spi", "already used by sa[0].out.spi"]),
        ('name = "second"', 'name = "main"', ["sa[1].name", "'main' is already sa[0]"]),
        (OUT2_KEY, IN_KEY, ["sa[1].out.enc_key", "same key as sa[0].in.enc_key"]),
        (
            'local_ts = ["198.19.1.0/24"]\nremote_ts = ["198.19.3.0/24"]',
            'local_ts = ["2001:2:0:1::/64", "198.19.1.0/24"]\n'
            'remote_ts = ["2001:2:0:2::/64", "198.19.2.0/24"]',
            ["sa[1]: same local_ts and remote_ts as sa[0]"],
        ),
    ],
)
def test_clashes_between_sa_pairs(tmp_path: Path, old: str, new: str, words: list[str]) -> None:
    message = error_of(tmp_path, BASE + edit(old, new, SECOND_SA))
    for word in words:
        assert word in message, (word, message)


def test_interface_address_outside_local_ts_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = edit('"2001:2:0:1::1/64"', '"2001:2:0:1::1/64", "198.19.9.1/24"')
    with caplog.at_level(logging.WARNING, logger="espfast.config"):
        load_text(tmp_path, text)
    (record,) = caplog.records
    assert "interface address 198.19.9.1/24 is in no SA's local_ts" in record.getMessage()


def test_same_spi_in_both_directions_is_allowed(tmp_path: Path) -> None:
    # SPIs are chosen by the receiver; the two directions are separate tables.
    cfg = load_text(tmp_path, edit("3221225474", "3221225473"))
    assert cfg.sas[0].inbound.spi == cfg.sas[0].outbound.spi


def test_config_without_sa(tmp_path: Path) -> None:
    message = error_of(tmp_path, BASE.split("[[sa]]")[0])
    assert message.endswith(": (top level): missing required key 'sa'")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_static(tmp_path / "nope.toml")


def test_world_readable_config_with_keys_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_private(tmp_path / "t.toml", BASE)
    with caplog.at_level(logging.WARNING, logger="espfast.config"):
        load_static(path)
    assert not caplog.records
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING, logger="espfast.config"):
        load_static(path)
    (record,) = caplog.records
    assert "readable by every user" in record.getMessage()
    assert OUT_KEY not in record.getMessage()


def test_world_readable_key_file_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key_file, out_file = tmp_path / "in.hex", tmp_path / "out.hex"
    key_file.write_text(IN_KEY)
    os.chmod(key_file, 0o644)
    write_private(out_file, OUT_KEY)
    text = edit(f'enc_key = "{IN_KEY}"', f'enc_key_file = "{key_file}"')
    text = edit(f'enc_key = "{OUT_KEY}"', f'enc_key_file = "{out_file}"', text)
    with caplog.at_level(logging.WARNING, logger="espfast.config"):
        load_text(tmp_path, text)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [f"key file {key_file} is readable by every user; chmod 600 it"]
    assert not any("t.toml" in m for m in messages)  # no inline keys left in the config


def test_base_text_is_valid_toml() -> None:
    # Guards the error table above: every case starts from a file that parses.
    assert tomllib.loads(BASE)["sa"][0]["in"]["spi"] == 0xC0000002


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("198.18.0.2", ("198.18.0.2", 4500)),
        ("198.18.0.2:4501", ("198.18.0.2", 4501)),
        ("2001:2::2", ("2001:2::2", 4500)),
        ("[2001:2::2]:4501", ("2001:2::2", 4501)),
        ("[2001:2:0:0::2]", ("2001:2::2", 4500)),
    ],
)
def test_ipv6_outer_endpoints(tmp_path: Path, text: str, expected: tuple[str, int]) -> None:
    listen = "[2001:2::1]:4500" if ":" in expected[0] else "198.18.0.1:4500"
    cfg_text = edit('listen = "198.18.0.1:4500"', f'listen = "{listen}"')
    cfg = load_text(tmp_path, edit('peer = "198.18.0.2"', f'peer = "{text}"', cfg_text))
    assert cfg.sas[0].peer == expected


@pytest.mark.parametrize("text", ["[2001:2::2", "[2001:2::2]4500", "[2001:2::2]:x"])
def test_bad_bracketed_endpoints(tmp_path: Path, text: str) -> None:
    message = error_of(tmp_path, edit('peer = "198.18.0.2"', f'peer = "{text}"'))
    assert "sa[0].peer" in message


def test_default_workers_is_one_per_two_cpus_up_to_four(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for cpus, want in ((1, 1), (2, 1), (3, 1), (4, 2), (8, 4), (64, 4)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda _pid, n=cpus: set(range(n)))
        assert default_workers() == want
