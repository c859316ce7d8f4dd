"""control/config.py (IkeConfig): one clear error for each kind of bad connection."""

from dataclasses import replace

import pytest
from ikepair import configs

from espfast.control.config import AuthConfig, ChildConfig


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"ike_proposals": ()}, "no IKE proposals"),
        ({"auth": AuthConfig()}, "neither a pre-shared key nor a certificate"),
        ({"auth": AuthConfig(psk=b"short")}, "shorter than 8 bytes"),
        ({"fragment_size": 500}, "fragment_size 500"),
        ({"retransmit_timeout": 0}, "retransmit_timeout"),
    ],
)
def test_bad_connection(change: dict[str, object], error: str) -> None:
    ci, _ = configs()
    with pytest.raises(ValueError, match=error):
        replace(ci, **change)  # type: ignore[arg-type]


def test_bad_children() -> None:
    ci, _ = configs()
    child = ci.children[0]
    with pytest.raises(ValueError, match="unique"):
        replace(ci, children=(child, child))
    with pytest.raises(ValueError, match="needs local_ts"):
        replace(ci, children=(ChildConfig("c", (), child.remote_ts),))
    with pytest.raises(ValueError, match="no ESP proposals"):
        replace(ci, children=(replace(child, esp_proposals=()),))
    assert "s3cret" not in repr(ci)  # the PSK stays out of reprs
