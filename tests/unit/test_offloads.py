"""Dataplane offload detection and forced fallbacks (no root: a socketpair stands in for
the TUN device, so only the UDP offloads can be in use)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest

from espfast.dataplane import DISABLE_ENV, Dataplane


@pytest.fixture
def fds() -> Iterator[tuple[int, socket.socket]]:
    tun, other = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    with tun, other, udp:
        yield tun.fileno(), udp


def test_udp_offloads_detected_and_missing_ones_logged(
    fds: tuple[int, socket.socket],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    with caplog.at_level(logging.DEBUG, "espfast.dataplane"), Dataplane(*fds) as dp:
        # This kernel has UDP_SEGMENT and UDP_GRO; a socketpair has no vnet header.
        assert dp.offloads() == {"udp_gso", "udp_gro"}
    text = caplog.text
    assert "offload vnet not in use: the TUN fd has no IFF_VNET_HDR" in text
    assert "offload tun_tso not in use" in text and "offload udp_gso not in use" not in text


@pytest.mark.parametrize(
    ("disable", "left"),
    [(["udp_gso"], {"udp_gro"}), (["udp_gro"], {"udp_gso"}), (["all"], set())],
)
def test_forced_off(fds: tuple[int, socket.socket], disable: list[str], left: set[str]) -> None:
    with Dataplane(*fds, disable_offloads=disable) as dp:
        assert dp.offloads() == left


def test_forced_off_from_the_environment(
    fds: tuple[int, socket.socket],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv(DISABLE_ENV, "udp_gso, udp_gro")
    with caplog.at_level(logging.DEBUG, "espfast.dataplane"), Dataplane(*fds) as dp:
        assert dp.offloads() == frozenset()
    assert "offload udp_gso not in use: disabled" in caplog.text


def test_unknown_offload_name_is_a_clear_error(fds: tuple[int, socket.socket]) -> None:
    with pytest.raises(ValueError, match=r"unknown offload\(s\) nope \(known: .*udp_gso"):
        Dataplane(*fds, disable_offloads=["nope"])
    with pytest.raises(ValueError, match="unknown offload"):
        Dataplane(*fds, disable_offloads=["vnet"])  # decided by how the TUN was opened
