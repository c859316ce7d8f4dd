"""``espfast static`` at the command line, for what needs no root: config errors, --check."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from espfast.cli import main
from espfast.static import pair_configs, write_private


def test_bad_config_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text_a, _ = pair_configs()
    conf = write_private(tmp_path / "a.toml", text_a.replace("aes128gcm16", "aes128gcm12"))
    assert main(["static", "-c", str(conf)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.strip().splitlines()
    assert line.startswith(f"espfast static: {conf}: sa[0].transform: unknown transform")


def test_check_accepts_a_good_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text_a, _ = pair_configs("aes256-sha512", esn=True)
    conf = write_private(tmp_path / "a.toml", text_a)
    assert main(["static", "-c", str(conf), "--check"]) == 0
    assert capsys.readouterr().out == f"{conf}: OK (1 SA pair(s))\n"


def test_missing_config_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["static"])
    assert exc.value.code == 2
    assert "-c/--config" in capsys.readouterr().err


def test_counters_report_for_humans_shows_traffic_and_only_moved_drops() -> None:
    from espfast.dataplane import SaStats, Stats
    from espfast.static import counters, format_report

    names = [f.name for f in dataclasses.fields(Stats)]  # not the ClassVar NOT_DROPS
    g = counters(Stats(**{n: 0 for n in names} | {"rx_packets": 7, "rx_bytes": 700}))
    g["unknown_spi"] = 3
    sa_fields = SaStats.__dataclass_fields__
    sa = counters(SaStats(**{n: 0 for n in sa_fields} | {"packets": 5, "exhausted": True}))
    report = {
        "interface": "ef0",
        "seconds": 2.0,
        "ike_datagrams_ignored": 0,
        "global": g,
        "sas": [{"name": "t", "direction": "out", "spi": "0x0000abcd"} | sa],
    }
    assert format_report(report).splitlines() == [
        "espfast static: ef0 ran 2.0 s",
        "  received 7 packets (700 bytes), sent 0 packets (0 bytes)",
        "  dropped: unknown_spi 3",
        "  t out spi 0x0000abcd: 5 packets, 0 bytes, seq 0; dropped: exhausted True",
    ]
