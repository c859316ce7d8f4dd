"""espfast static's sequence state file (espfast.seqstate): reservations on disk before
the dataplane may use them, exact numbers at a clean stop, refusals instead of guesses."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from ipaddress import ip_network
from pathlib import Path

import pytest

from espfast.dataplane import Direction, SaParams, SaStats, Transform
from espfast.seqstate import CHECKPOINT_S, RENEW_BELOW, RESERVE, SeqState, StateError

NET_A, NET_B = ip_network("198.19.1.0/24"), ip_network("198.19.2.0/24")


def sa(direction: Direction, key: bytes, spi: int = 0x1000, esn: bool = False) -> SaParams:
    return SaParams(
        spi=spi, direction=direction, transform=Transform.AES128GCM16, enc_key=key,
        local_ts=(NET_A,), remote_ts=(NET_B,), esn=esn,
        peer=("198.18.0.2", 4500) if direction is Direction.OUT else None,
    )  # fmt: skip


OUT = sa(Direction.OUT, bytes(range(20)))
IN = sa(Direction.IN, bytes(range(100, 120)), spi=0x2000)
SAS = [("t", OUT), ("t", IN)]


class FakeDp:
    """The dataplane as the state sees it: a sequence number per SA, and seq_limit calls
    recorded with what the state file said at that moment."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seq: dict[tuple[int, Direction], int] = {}
        self.limits: list[tuple[int, int, int]] = []  # (spi, limit, mark on disk)

    def sa_stats(self, spi: int, direction: Direction) -> SaStats:
        zero = {f.name: 0 for f in dataclasses.fields(SaStats)}
        return SaStats(**zero | {"seq": self.seq.get((spi, direction), 0), "exhausted": False})

    def set_seq_limit(self, spi: int, limit: int) -> None:
        self.limits.append((spi, limit, on_disk(self.path, Direction.OUT)))


def started(path: Path, sas: list[tuple[str, SaParams]], fresh: bool) -> SeqState:
    """Opened and started: the first reservations are on disk."""
    state = SeqState.open(path, sas, fresh_keys=fresh)
    state.start()
    return state


def on_disk(path: Path, direction: Direction) -> int:
    sas = json.loads(path.read_text())["sas"]
    (entry,) = [e for e in sas.values() if e["direction"] == str(direction)]
    seq = entry["seq"]
    assert isinstance(seq, int)
    return seq


def test_missing_state_is_refused_unless_fresh(tmp_path: Path) -> None:
    path = tmp_path / "a.toml.state"
    with pytest.raises(StateError, match=r"no state file .* --fresh-keys"):
        SeqState.open(path, SAS, fresh_keys=False)
    assert not path.exists()
    state = SeqState.open(path, SAS, fresh_keys=True)
    assert not path.exists()  # nothing written until the tunnel starts
    assert state.start() == [(OUT, 0, RESERVE), (IN, 0, 0)]
    # the first reservation is on disk (owner-only) before the dataplane gets a number
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert on_disk(path, Direction.OUT) == RESERVE and on_disk(path, Direction.IN) == 0
    state.close(None)


def test_clean_stop_writes_exact_numbers_crash_resumes_above_reservation(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s"
    dp = FakeDp(path)
    state = started(path, SAS, True)
    dp.seq = {(OUT.spi, Direction.OUT): 500, (IN.spi, Direction.IN): 321}
    state.close(dp)
    state = SeqState.open(path, SAS, fresh_keys=False)
    assert state.start() == [(OUT, 500, 500 + RESERVE), (IN, 321, 0)]
    # a crash: no close with numbers; the next start is above the whole reservation
    state.close(None)
    state = SeqState.open(path, SAS, fresh_keys=False)
    assert state.start()[0] == (OUT, 500 + RESERVE, 500 + 2 * RESERVE)
    state.close(None)


def test_tick_renews_on_disk_before_raising_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "s"
    dp = FakeDp(path)
    state = started(path, SAS, True)
    dp.seq[(OUT.spi, Direction.OUT)] = RESERVE - RENEW_BELOW - 1
    state.tick(dp, now=100.0)
    assert dp.limits == []  # enough left
    dp.seq[(OUT.spi, Direction.OUT)] = RESERVE - RENEW_BELOW + 1
    state.tick(dp, now=100.1)
    new = RESERVE - RENEW_BELOW + 1 + RESERVE
    assert dp.limits == [(OUT.spi, new, new)]  # the file said so before C was told
    state.close(None)


def test_inbound_floor_checkpoints_at_most_every_interval(tmp_path: Path) -> None:
    path = tmp_path / "s"
    dp = FakeDp(path)
    state = started(path, SAS, True)
    dp.seq[(IN.spi, Direction.IN)] = 10
    state.tick(dp, now=1000.0)
    assert on_disk(path, Direction.IN) == 10
    dp.seq[(IN.spi, Direction.IN)] = 20
    state.tick(dp, now=1000.0 + CHECKPOINT_S / 2)
    assert on_disk(path, Direction.IN) == 10
    state.tick(dp, now=1000.0 + CHECKPOINT_S)
    assert on_disk(path, Direction.IN) == 20
    state.close(None)


def test_one_process_per_state_file(tmp_path: Path) -> None:
    path = tmp_path / "s"
    first = started(path, SAS, True)
    with pytest.raises(StateError, match="in use by another"):
        SeqState.open(path, SAS, fresh_keys=True)
    first.close(None)
    SeqState.open(path, SAS, fresh_keys=False).close(None)


def test_unknown_sa_needs_fresh_keys_spi_change_keeps_state(tmp_path: Path) -> None:
    path = tmp_path / "s"
    started(path, SAS, True).close(None)
    other = sa(Direction.OUT, bytes(range(50, 70)), spi=0x3000)
    with pytest.raises(StateError, match=r"no state for SA .u. out .*0x00003000"):
        SeqState.open(path, [*SAS, ("u", other)], fresh_keys=False)
    # The same key under another SPI: still the same nonces, so the same state.
    moved = dataclasses.replace(OUT, spi=0x4444)
    state = SeqState.open(path, [("t", moved), ("t", IN)], fresh_keys=False)
    assert state.start()[0] == (moved, RESERVE, 2 * RESERVE)  # after a crash
    state.close(None)


def test_damaged_or_spent_state_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s"
    path.write_text("{not json")
    with pytest.raises(StateError, match="damaged"):
        SeqState.open(path, SAS, fresh_keys=True)
    started(tmp_path / "t", SAS, True).close(None)
    data = json.loads((tmp_path / "t").read_text())
    for entry in data["sas"].values():
        entry["seq"] = 2**32 - 1  # a non-ESN key that has sent its last number
    (tmp_path / "t").write_text(json.dumps(data))
    with pytest.raises(StateError, match="used up"):
        SeqState.open(tmp_path / "t", SAS, fresh_keys=False)
    text = (tmp_path / "t").read_text()
    assert OUT.enc_key.hex() not in text and IN.enc_key.hex()[:16] not in text  # fingerprints
