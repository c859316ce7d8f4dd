"""The certificate keys of an ``espfast up`` client, checked by a charon gateway: a chain
root -> intermediate -> leaf where the gateway trusts only the root and the client sends
the intermediate from ``intermediates``; ``auth = "rsa"`` signs with the classic method
(AUTH method 1) although charon announced RFC 7427; ``send_certreq = false`` sends no
CERTREQ; ``send_cert = "ifasked"`` sends the chain because charon asked, and
``send_cert = "never"`` sends none, so charon cannot verify us."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.tunnels.peerutil import cert_pem, issue, key_pem, new_key
from espfast.netns import TwoHosts
from espfast.static import start_in, write_private
from tests.interop.conftest import INNER_B, CharonFactory
from tests.interop.strongswan import Connection, swanctl_conf
from tests.interop.test_up_charon import IDS, TS_A, TS_B, espfast_conf, tunnel_works


def chain(tmp_path: Path) -> tuple[str, dict[str, bytes]]:
    """(espfast's credential lines, charon's swanctl files)."""
    root_key, im_key = new_key("rsa"), new_key("rsa")
    root = issue("certs config root", root_key)
    im = issue("certs config intermediate", im_key, (root, root_key), ca=True)
    a_key, b_key = new_key("rsa"), new_key("rsa")
    a = issue(IDS[0], a_key, (im, im_key), dns=[IDS[0]])
    b = issue(IDS[1], b_key, (root, root_key), dns=[IDS[1]])
    (tmp_path / "root.crt").write_bytes(cert_pem(root))
    (tmp_path / "im.crt").write_bytes(cert_pem(im))
    (tmp_path / "a.crt").write_bytes(cert_pem(a))  # the leaf alone: no chain appended
    write_private(tmp_path / "a.key", key_pem(a_key).decode())
    lines = (f'auth = "rsa"\ncert = "{tmp_path}/a.crt"\nkey = "{tmp_path}/a.key"\n'
             f'cacerts = ["{tmp_path}/root.crt"]\nintermediates = ["{tmp_path}/im.crt"]\n'
             "send_certreq = false")  # fmt: skip
    files = {"x509ca/root.pem": cert_pem(root), "x509/b.pem": cert_pem(b),
             "private/b.key": key_pem(b_key)}  # fmt: skip
    return lines, files


def gateway(hosts: TwoHosts) -> str:
    return swanctl_conf([Connection(
        local_addrs=hosts.addr_b, remote_addrs="%any", local_id=IDS[1], remote_id=IDS[0],
        local_ts=TS_B, remote_ts=TS_A, auth="pubkey", local_cert="b.pem",
        proposals="aes256-sha256-ecp256", esp_proposals="aes256gcm16",
        extra={"send_cert": "always"},  # we ask for nothing (send_certreq = false)
    )])  # fmt: skip


@pytest.mark.parametrize("send_cert", ["always", "ifasked"])
def test_intermediate_classic_rsa_no_certreq(
    charons: CharonFactory, tmp_path: Path, send_cert: str
) -> None:
    lines, files = chain(tmp_path)
    with TwoHosts.create("certs") as hosts:
        hosts.b.run("ip", "addr", "add", f"{INNER_B}/32", "dev", "lo")
        charon = charons.start(hosts.b, gateway(hosts), files=files)
        conf = espfast_conf(hosts, initiate=True, esp="aes256gcm16", ike="aes256-sha256-ecp256",
                            auth=f'{lines}\nsend_cert = "{send_cert}"')  # fmt: skip
        up = start_in(hosts.a, write_private(tmp_path / "a.toml", conf), "-v", command="up")
        try:
            charon.wait_child("net")
            assert tunnel_works(hosts)
            log = charon.log(None)
        finally:
            rc, _, err = up.stop()
    assert rc == 0, err
    lines_ = log.splitlines()
    # charon announced RFC 7427 and asked for certificates ...
    assert any("generating IKE_SA_INIT response" in x and "N(HASH_ALG)" in x
               and "CERTREQ" in x for x in lines_), log[-3000:]  # fmt: skip
    # ... we sent our leaf and the intermediate, no CERTREQ, and signed with method 1.
    assert f'received end entity cert "CN={IDS[0]}"' in log, log[-3000:]
    assert 'received issuer cert "CN=certs config intermediate"' in log, log[-3000:]
    auth = [x for x in lines_ if "parsed IKE_AUTH request" in x]
    assert auth and all("CERTREQ" not in x for x in auth), auth
    assert f"authentication of '{IDS[0]}' with RSA signature successful" in log, log[-3000:]


def test_send_cert_never_leaves_charon_without_our_certificate(
    charons: CharonFactory, tmp_path: Path
) -> None:
    lines, files = chain(tmp_path)
    with TwoHosts.create("certs") as hosts:
        charon = charons.start(hosts.b, gateway(hosts), files=files)
        conf = espfast_conf(hosts, initiate=True, esp="aes256gcm16", ike="aes256-sha256-ecp256",
                            auth=f'{lines}\nsend_cert = "never"')  # fmt: skip
        up = start_in(hosts.a, write_private(tmp_path / "a.toml", conf), "-v", command="up")
        try:
            charon.wait_log("no trusted RSA public key found", timeout=15)
            log = charon.log(None)
            children = charon.installed_children("net")
        finally:
            rc, _, err = up.stop()
    assert rc == 0, err
    assert "received end entity cert" not in log, log[-3000:]
    assert children == []
