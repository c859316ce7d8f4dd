"""IKE_AUTH (RFC 7296 §1.2, §2.15) with the first Child SA.

IKE_AUTH { IDi, [CERT,] [CERTREQ,] [IDr,] AUTH, SAi2, TSi, TSr } -->
                            <-- { IDr, [CERT,] AUTH, SAr2, TSi, TSr }
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .. import policy, vip
from ..auth import canonical_id, id_matches, psk_auth, psk_verify, signed_octets
from ..config import ChildConfig
from ..constants import AuthMethod, CertEncoding, ExchangeType, NotifyType
from ..errors import PeerError, RemoteProtocolError
from ..message import Message, check_rules
from ..payloads import (
    AuthPayload,
    CertPayload,
    CertReqPayload,
    CpPayload,
    IdiPayload,
    IdPayload,
    IdrPayload,
    NotifyPayload,
    Payload,
)
from .base import Task
from .child_create import ChildNegotiation
from .mobike import address_notifies, take_peer_addresses

if TYPE_CHECKING:
    from ..ike_sa import IkeSa


def _auth_failed(why: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"authentication failed: {why}",
                               notify=NotifyType.AUTHENTICATION_FAILED)  # fmt: skip


class IkeAuth(Task):
    exchange = ExchangeType.IKE_AUTH

    def __init__(self, sa: IkeSa, initiator: bool, child: ChildConfig | None = None) -> None:
        super().__init__(sa, initiator)
        self.neg = ChildNegotiation(sa, initiator, child, ignore_dh=True)
        self.peer_id: IdPayload | None = None
        self.subnets_wanted: tuple[int, ...] = ()  # responder: INTERNAL_IP*_SUBNET asked

    # -- AUTH computation (§2.15) ------------------------------------------------------
    def _octets(self, ours: bool, id_payload: IdPayload) -> bytes:
        sa = self.sa
        k = sa.keys
        i_am_initiator = sa.initiator
        # The initiator signs message 1 with Nr and SK_pi; the responder message 2 with
        # Ni and SK_pr.
        signer_is_initiator = i_am_initiator if ours else not i_am_initiator
        if signer_is_initiator:
            return signed_octets(sa.init_request, sa.nonce_r, sa.prf, bytes(k.sk_pi),
                                 id_payload.body())  # fmt: skip
        return signed_octets(sa.init_response, sa.nonce_i, sa.prf, bytes(k.sk_pr),
                             id_payload.body())  # fmt: skip

    def _our_auth(self, id_payload: IdPayload) -> list[Payload]:
        auth = self.sa.config.auth
        octets = self._octets(True, id_payload)
        send = auth.send_cert == "always" or (auth.send_cert == "ifasked" and self.sa.peer_certreq)
        out: list[Payload] = [CertPayload(CertEncoding.X509_SIGNATURE, c)
                              for c in (auth.certs if send else ())]  # fmt: skip
        if auth.psk is not None:
            out.append(AuthPayload(AuthMethod.PSK, psk_auth(self.sa.prf, auth.psk, octets)))
        elif auth.signer is not None:
            method, data = auth.signer(octets, self.sa.peer_hash_algorithms)
            out.append(AuthPayload(method, data))
        else:
            raise RemoteProtocolError("no local authentication configured",
                                      notify=NotifyType.AUTHENTICATION_FAILED)  # fmt: skip
        return out

    def _check_peer(self, msg: Message, id_payload: IdPayload) -> bytes:
        """Authenticate the peer under ``sa.config``; its canonical identity."""
        auth = msg.get(AuthPayload)
        if auth is None:
            raise _auth_failed("no AUTH payload")
        cfg = self.sa.config
        peer = (id_payload.id_type, id_payload.data)
        if cfg.remote_id is not None and not id_matches(peer, cfg.remote_id):
            raise _auth_failed(f"peer identity {self.sa.id_str(id_payload)} is not the "
                               "configured one")  # fmt: skip
        octets = self._octets(False, id_payload)
        peer_psk = cfg.auth.peer_uses_psk
        if peer_psk is None:
            peer_psk = cfg.auth.psk is not None
        if peer_psk:
            if auth.method != AuthMethod.PSK or cfg.auth.psk is None:
                raise _auth_failed(f"peer used AUTH method {auth.method}, we expect PSK")
            if not psk_verify(self.sa.prf, cfg.auth.psk, octets, auth.data):
                raise _auth_failed("pre-shared key mismatch")
            return canonical_id(peer)
        if cfg.auth.verifier is None:
            raise _auth_failed("no way to verify the peer's signature")
        certs = [c.data for c in msg.all(CertPayload)
                 if c.encoding == CertEncoding.X509_SIGNATURE]  # fmt: skip
        try:
            key = cfg.auth.verifier(auth.method, auth.data, octets, certs, peer)
        except RemoteProtocolError as exc:
            raise _auth_failed(str(exc)) from None
        return key or canonical_id(peer)

    def _select_and_check(self, msg: Message, idi: IdPayload) -> bytes:
        """Responder: the connection for this peer (control/policy.py), the first of the
        candidates whose authentication it passes; its canonical identity."""
        sa = self.sa
        # The connection IKE_SA_INIT chose goes first among equally good matches.
        ours = (sa.config, *(c for c in sa.candidates if c is not sa.config))
        configs = policy.candidates(ours, (idi.id_type, idi.data), sa.chosen)
        if not configs:
            raise _auth_failed(f"no connection for peer {sa.id_str(idi)} "
                               f"with {sa.chosen}")  # fmt: skip
        first: RemoteProtocolError | None = None
        for cfg in configs:
            sa.config = cfg
            try:
                return self._check_peer(msg, idi)
            except RemoteProtocolError as exc:
                if len(configs) > 1:
                    sa.log(f"connection {cfg.name} refuses {sa.id_str(idi)}: {exc}")
                first = first or exc
        sa.config = configs[0]
        assert first is not None
        raise first

    # -- both roles --------------------------------------------------------------------
    def build(self) -> list[Payload]:
        sa = self.sa
        cfg = sa.config
        if self.initiator:
            idi = IdiPayload(*cfg.local_id)
            out: list[Payload] = [idi]
            auth = self._our_auth(idi)
            out += [p for p in auth if isinstance(p, CertPayload)]
            out += [CertReqPayload(CertEncoding.X509_SIGNATURE, h) for h in cfg.auth.certreq]
            if cfg.remote_id is not None and b"*" not in cfg.remote_id[1]:
                out.append(IdrPayload(*cfg.remote_id))  # a wildcard names nobody
            out += [p for p in auth if not isinstance(p, CertPayload)]
            if cfg.initial_contact:
                # RFC 7296 §2.4: we hold no other IKE SA with this peer (e.g. after a
                # restart), so it may drop the ones it still has with us.
                out.append(NotifyPayload(NotifyType.INITIAL_CONTACT))
            if cfg.mobike:
                out.append(NotifyPayload(NotifyType.MOBIKE_SUPPORTED))  # RFC 4555 §3.1
                out += address_notifies(sa)  # §3.6
            if cfg.vips:
                out.append(vip.request(cfg.vips))
            return out + self.neg.request()
        idr = IdrPayload(*cfg.local_id)
        mobike = [NotifyPayload(NotifyType.MOBIKE_SUPPORTED), *address_notifies(sa)] \
            if sa.mobike else []  # fmt: skip
        nets = tuple(dict.fromkeys(
            n for c in cfg.children for ts in c.local_ts for n in ts.networks()
            if n.version in self.subnets_wanted
        ))  # fmt: skip
        cp = [vip.reply(sa.remote_vips, cfg.dns, nets)] if sa.remote_vips else []
        return [idr, *self._our_auth(idr), *mobike, *cp, *self.neg.answer()]

    def process(self, msg: Message, raw: bytes) -> bool:
        sa = self.sa
        if self.initiator:
            err = msg.error_notify()
            if err is not None and msg.get(AuthPayload) is None:
                raise PeerError(f"peer answered {_name(err.notify_type)}", err.notify_type)
            check_rules(msg)
            idr = msg.need(IdrPayload)
            sa.peer_key = self._check_peer(msg, idr)
            sa.peer_id = idr
            return self._complete(msg, msg.notify(NotifyType.MOBIKE_SUPPORTED) is not None)
        check_rules(msg)
        idi = msg.need(IdiPayload)
        sa.peer_certreq = sa.peer_certreq or msg.get(CertReqPayload) is not None
        sa.peer_key = self._select_and_check(msg, idi)
        sa.peer_id = idi
        return self._admit(msg, sa.id_str(idi))

    def _complete(self, msg: Message, mobike: bool) -> bool:
        """Initiator: the peer is authenticated; take its answer and the Child SA."""
        sa = self.sa
        sa.mobike = sa.config.mobike and mobike
        if sa.mobike:
            take_peer_addresses(sa, msg)  # (the peer is authenticated by now)
        if sa.config.vips:
            sa.local_vips, sa.dns = vip.assigned(msg.get(CpPayload))
            if nets := vip.subnets(msg.get(CpPayload)):
                sa.log("the peer protects " + ", ".join(map(str, nets)))
            if not sa.local_vips:
                sa.abandon("the peer assigned no virtual IP (we asked for one)")
                return True
        sa.established()
        if self.neg.response(msg) is None:
            self.neg.report_failure()
        else:
            self.neg.install(sa.nonce_i, sa.nonce_r)
        return True

    def _admit(self, msg: Message, who: str) -> bool:
        """Responder: the peer (``who`` in the log) is authenticated as ``sa.peer_id``;
        apply the uniqueness policy, lease virtual IPs, choose the Child SA from ``msg``
        (its first IKE_AUTH request)."""
        sa = self.sa
        sa.initial_contact = msg.notify(NotifyType.INITIAL_CONTACT) is not None
        # strongSwan's unique = keep: the first IKE SA stays; a second one from the same
        # address is taken for a reauthentication and let in; INITIAL_CONTACT overrides.
        keep = sa.config.unique == "keep" and not sa.initial_contact
        if keep and any(o.remote[0] != sa.remote[0] for o in sa.duplicates(sa)):
            raise _auth_failed(f"{who} has an IKE SA from another address "
                               "(unique = keep)")  # fmt: skip
        if refusal := sa.admit(sa):  # IkeManager's caps (ike_sas_per_identity)
            raise _auth_failed(refusal)
        sa.mobike = sa.config.mobike and msg.notify(NotifyType.MOBIKE_SUPPORTED) is not None
        if sa.mobike:
            take_peer_addresses(sa, msg)  # (the peer is authenticated by now)
        wanted = vip.requested(msg.get(CpPayload)) if sa.config.pool else ()
        self.subnets_wanted = vip.subnets_requested(msg.get(CpPayload))
        leased = [sa.lease(sa, version) for version in wanted]
        sa.remote_vips = tuple(a for a in leased if a is not None)
        if wanted and not sa.remote_vips:
            sa.log(f"no virtual IP left for {who}", logging.WARNING)
            failure = NotifyType.INTERNAL_ADDRESS_FAILURE
            self.neg.error = RemoteProtocolError("no virtual IP left", notify=failure)
            return True
        self.neg.choose(msg)
        return True

    def responded(self, raw: bytes) -> None:
        sa = self.sa
        sa.established()
        if self.neg.child is not None:
            self.neg.install(sa.nonce_i, sa.nonce_r)
        else:
            self.neg.report_failure()

    def rebind(self, sa: IkeSa) -> None:
        self.sa = self.neg.sa = sa

    def failed(self, reason: str) -> None:
        pass


def _name(notify_type: int) -> str:
    try:
        return NotifyType(notify_type).name
    except ValueError:
        return str(notify_type)
