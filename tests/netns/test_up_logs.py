"""What ``espfast up -v`` logs: one INFO line per IKE event (IKE SA up with the peer,
both identities and the proposal; Child SA installed with SPIs, transform and selectors;
rekeyed; deleted; failures naming the notify), message-level detail only at DEBUG
(``-vv``), and never a key or the PSK, in any of it."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from espfast.netns import TwoHosts
from espfast.up import pair_configs
from tests.netns.uplog import run_pair

PSK = "the log test's pre-shared key, long enough"
SPI = "[0-9a-f]{8}"


def no_secrets(texts: tuple[str, ...]) -> None:
    for text in texts:
        assert PSK not in text and PSK.encode().hex() not in text
        assert base64.b64encode(PSK.encode()).decode() not in text
        # Keys are 16 bytes or more: no run of 32 hex digits anywhere (SPIs are 8 or 16).
        assert not re.search("[0-9a-fA-F]{32}", text), re.search("[0-9a-fA-F]{32}", text)


def test_one_info_line_per_event_debug_for_messages_no_keys(tmp_path: Path) -> None:
    a_conf, b_conf = pair_configs(PSK)
    a_conf += "rekey_time = 2\n"  # the Child SA rekeys about 2 s after it came up
    with TwoHosts.create("i3") as hosts:  # a at -v (INFO), b at -vv (DEBUG)
        run = run_pair(hosts, tmp_path, (a_conf, b_conf), "child SA rekeyed", ("-v", "-vv"))
    err_a, err_b = run.err
    assert run.seen, err_a
    info = [line for line in err_a.splitlines() if " INFO espfast." in line]
    events = [line.split(": ", 1)[1] for line in info if "espfast.daemon:" in line]
    expected = [
        r"site: initiating to 198\.18\.0\.2",
        r"site: IKE SA up with 198\.18\.0\.2:4500, 198\.18\.0\.1 === 198\.18\.0\.2, "
        r"aes128gcm16-prfsha256-x25519",
        rf"net: child SA up, aes128gcm16, in ({SPI}) out {SPI}, "
        r"198\.19\.1\.0/24 === 198\.19\.2\.0/24",
        rf"net: child SA rekeyed \(was in ({SPI})\), aes128gcm16, in ({SPI}) out {SPI}, "
        r"198\.19\.1\.0/24 === 198\.19\.2\.0/24",
        rf"net: child SA ({SPI}) down: deleted",
        r"site: IKE SA down: deleted",
    ]
    found = [re.fullmatch(pattern, line) for pattern, line in zip(expected, events, strict=True)]
    assert all(found), list(zip(expected, events, strict=True))
    first, rekeyed, gone = found[2], found[3], found[4]
    assert first is not None and rekeyed is not None and gone is not None
    # The rekey replaced the first Child SA; the new one went at shutdown.
    assert rekeyed[1] == first[1] and gone[1] == rekeyed[2]
    # Each event once: the control plane's own lines about them are DEBUG.
    assert sum("IKE SA" in line and " up" in line for line in info) == 1, info
    assert " DEBUG " not in err_a
    # -vv: message-level detail (exchange, message ID, payloads), still no keys.
    assert re.search(r"DEBUG espfast\.control: site\[\d+\]: received IKE_SA_INIT 0 request "
                     r"\{ SA KE NONCE ", err_b), err_b  # fmt: skip
    assert re.search(r"DEBUG espfast\.control: site\[\d+\]: sending CREATE_CHILD_SA \d+ "
                     r"response \{ SA NONCE .*TSI TSR \}", err_b), err_b  # fmt: skip
    no_secrets(run.err + run.out)


def test_failure_line_names_the_notify(tmp_path: Path) -> None:
    """A wrong PSK: a's line names the notify b answered with; b's says why it refused."""
    a_conf, b_conf = pair_configs(PSK)
    b_conf = b_conf.replace(PSK, "another pre-shared key, also long enough")
    with TwoHosts.create("i3") as hosts:
        run = run_pair(hosts, tmp_path, (a_conf, b_conf), "AUTHENTICATION_FAILED")
    err_a, err_b = run.err
    assert run.seen, err_a
    assert re.search(r"WARNING espfast\.daemon: site: IKE SA down: peer answered "
                     r"AUTHENTICATION_FAILED", err_a), err_a  # fmt: skip
    assert re.search(r"WARNING espfast\.daemon: site: IKE SA down: IKE_AUTH refused: "
                     r"authentication failed: pre-shared key mismatch", err_b), err_b  # fmt: skip
    no_secrets(run.err + run.out)
