"""Message IDs, retransmission and the response cache (RFC 7296 §2.1-§2.3), window 1.

One request of ours is outstanding at a time (``active``); the peer's requests are
answered in order, and a retransmitted request gets the cached response again without
being processed twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .constants import ExchangeType, NotifyType
from .errors import LocalProtocolError, PeerError, ProtocolError, RemoteProtocolError
from .message import Message
from .payloads import NotifyPayload, Payload
from .tasks.base import Task
from .tasks.mobike import probe_destinations

if TYPE_CHECKING:
    from .ike_sa import IkeSa

log = logging.getLogger("espfast.control")


# The error notify that reports a local failure while answering each exchange.
_LOCAL_FAILURE: dict[int, int] = {
    ExchangeType.IKE_SA_INIT: NotifyType.NO_PROPOSAL_CHOSEN,
    ExchangeType.IKE_AUTH: NotifyType.AUTHENTICATION_FAILED,
    ExchangeType.CREATE_CHILD_SA: NotifyType.TEMPORARY_FAILURE,
}


def exchange_name(exchange: int) -> str:
    try:
        return ExchangeType(exchange).name
    except ValueError:
        return f"exchange {exchange}"


@dataclass
class Counters:
    retransmits: int = 0
    retransmitted_requests_answered: int = 0
    dropped_bad_message_id: int = 0
    dropped_unexpected_response: int = 0
    dropped_before_established: int = 0
    # Messages of the peer's that failed a check of ours (answered with an error notify, or
    # a response that ended our exchange), and of those the ones that raised something
    # other than a protocol error: input no parser or check caught, a gap to close.
    protocol_errors: int = 0
    unexpected_errors: int = 0
    # Retransmissions of a request whose answer waits on someone else (a RADIUS server).
    dropped_while_deferred: int = 0


@dataclass
class TaskManager:
    sa: IkeSa
    queue: list[Task] = field(default_factory=list)
    active: Task | None = None
    my_mid: int = 0  # the Message ID of our next (or outstanding) request
    peer_mid: int = 0  # the Message ID we expect on the peer's next request
    request: list[bytes] = field(default_factory=list)
    last_request_raw: bytes = b""
    tries: int = 0
    next_retransmit: float | None = None
    cached: tuple[int, list[bytes]] | None = None
    counters: Counters = field(default_factory=Counters)
    # The peer's request whose answer waits (a task that set ``deferred``): (task, mid,
    # exchange) until ``resume``.
    deferred: tuple[Task, int, int] | None = None

    # -- our requests ------------------------------------------------------------------
    def queue_task(self, task: Task, now: float) -> None:
        sa = self.sa.current
        if sa is not self.sa:  # rekeyed: the new IKE SA carries it (RFC 7296 §2.18)
            task.rebind(sa)
        sa.tm.queue.append(task)
        sa.tm.initiate(now)

    def initiate(self, now: float) -> None:
        sa = self.sa
        if self.active is None and sa.destroy_when_idle and not sa.is_destroyed:
            sa.destroy(sa.destroy_when_idle)
        if self.active is None and sa.reauth_of is not None:
            from . import reauth

            reauth.step(sa, now)
        if self.active is not None or not self.queue or sa.is_destroyed or sa.on_hold:
            return
        task = self.queue[0]
        setup = task.exchange in (ExchangeType.IKE_SA_INIT, ExchangeType.IKE_AUTH)
        if not setup and not sa.is_established:
            return
        self.queue.pop(0)
        self.active = task
        self._send_request(now)

    def _send_request(self, now: float) -> None:
        sa = self.sa
        task = self.active
        assert task is not None
        try:
            payloads = task.build()
        except (LocalProtocolError, RemoteProtocolError) as exc:
            self._finish()
            task.failed(str(exc))
            self.sa.destroy(f"cannot build {exchange_name(task.exchange)}: {exc}")
            return
        msg = Message(sa.spi_i, sa.spi_r, task.exchange, self.my_mid, False, sa.initiator,
                      tuple(payloads))  # fmt: skip
        self.request = sa.encode(msg)
        self.last_request_raw = self.request[0]
        self.tries = 0
        self.next_retransmit = now + sa.config.retransmit_timeout
        sa.log_message("sending", msg)
        sa.send(self.request)

    def handle_timer(self, now: float) -> None:
        if self.active is None or self.next_retransmit is None or now < self.next_retransmit:
            return
        cfg = self.sa.config
        if self.tries >= cfg.retransmit_tries:
            task = self.active
            self.active = None
            self.next_retransmit = None
            self.sa.probing = ()
            task.failed("peer not responding")
            # A peer that stops answering is dead (dead peer detection, RFC 7296 §2.4).
            self.sa.down_cause = "dpd" if self.sa.is_established else "failed"
            self.sa.destroy(f"peer not responding after {self.tries} retransmits")
            return
        self.tries += 1
        self.counters.retransmits += 1
        self.next_retransmit = now + cfg.retransmit_timeout * cfg.retransmit_base**self.tries
        self.sa.send(self.request)
        # MOBIKE initiator: the current path may be dead; try the peer's other addresses
        # with the same request (RFC 4555 §3.5); IkeSa.path_found takes the one that answers.
        probe = probe_destinations(self.sa, self.tries)
        if probe and probe != self.sa.probing:
            self.sa.log("no answer on the current path: trying " +
                        ", ".join(f"{a}:{p}" for a, p in probe))  # fmt: skip
        self.sa.probing = probe
        for dest in probe:
            self.sa.send(self.request, dest)

    def get_timer(self) -> float | None:
        return self.next_retransmit if self.active is not None else None

    def on_response(self, msg: Message, raw: bytes, now: float) -> None:
        task = self.active
        if task is None or msg.message_id != self.my_mid or msg.exchange != task.exchange:
            self.counters.dropped_unexpected_response += 1
            return
        self.sa.log_message("received", msg)
        self.sa.now = now
        setup = task.exchange in (ExchangeType.IKE_SA_INIT, ExchangeType.IKE_AUTH)
        failure: ProtocolError | None = None
        try:
            done = task.process(msg, raw)
        except (PeerError, RemoteProtocolError, LocalProtocolError) as exc:
            failure = exc
        except Exception as exc:  # the peer's input raised it, whatever it is
            failure = self._unexpected(exc)
        if failure is not None:
            if not isinstance(failure, PeerError):
                self.counters.protocol_errors += 1
            self._finish()
            task.failed(str(failure))
            if (
                task.exchange == ExchangeType.IKE_AUTH
                and isinstance(failure, RemoteProtocolError)
                and failure.notify == NotifyType.AUTHENTICATION_FAILED
            ):
                self._tell_peer(failure.notify)
            if setup or self.sa.is_deleting:
                self.sa.destroy(str(failure))
            else:
                self.sa.log(f"{exchange_name(task.exchange)} failed: {failure}")
            self.initiate(now)
            return
        if not done:  # rebuilt request (COOKIE, INVALID_KE_PAYLOAD)
            if task.exchange != ExchangeType.IKE_SA_INIT:
                self.my_mid += 1  # a new exchange; IKE_SA_INIT retries keep ID 0 (§2.6)
            self._send_request(now)
            return
        self._finish()
        self.initiate(now)

    def _unexpected(self, exc: Exception) -> RemoteProtocolError:
        """An exception no check of ours anticipated, raised while handling the peer's
        message: counted, its traceback at DEBUG, and handled as malformed input
        (INVALID_SYNTAX) like any other, so that a peer can never make us crash or fall
        silent."""
        self.counters.unexpected_errors += 1
        log.debug("%s[%d]: unexpected error on the peer's input", self.sa.config.name,
                  self.sa.ike_sa_id & 0xFFFF, exc_info=exc)  # fmt: skip
        return RemoteProtocolError(f"cannot process the message ({type(exc).__name__}: {exc})")

    def _tell_peer(self, notify: int) -> None:
        """RFC 7296 §2.21.2: an initiator that refuses the responder's AUTH says so in an
        INFORMATIONAL request; it is sent once, the IKE SA is gone right after."""
        sa = self.sa
        msg = Message(sa.spi_i, sa.spi_r, ExchangeType.INFORMATIONAL, self.my_mid, False,
                      sa.initiator, (NotifyPayload(notify),))  # fmt: skip
        sa.send(sa.encode(msg))

    def _finish(self) -> None:
        self.sa.early_deletes.clear()
        self.sa.probing = ()
        self.active = None
        self.next_retransmit = None
        self.request = []
        self.my_mid += 1

    # -- the peer's requests -----------------------------------------------------------
    def on_request(self, msg: Message | RemoteProtocolError, mid: int, exchange: int,
                   raw: bytes, now: float) -> None:  # fmt: skip
        sa = self.sa
        if self.cached is not None and mid == self.cached[0]:
            # §2.1: a retransmitted request gets the same response, processed once only.
            self.counters.retransmitted_requests_answered += 1
            sa.send(self.cached[1])
            src = sa.datagram_from
            if src != sa.remote and src[0] in sa.peer_addresses:
                # RFC 4555 §3.5: the peer probes its other paths with the retransmission
                # of a request whose answer we sent down the dead one. Only to addresses
                # the authenticated peer named as its own (a replay from elsewhere gets
                # no answer there, tests/security/test_sec_rebinding.py).
                sa.send(self.cached[1], src)
            return
        if self.deferred is not None and mid == self.peer_mid:
            self.counters.dropped_while_deferred += 1  # answered once the wait is over
            return
        if mid != self.peer_mid:
            self.counters.dropped_bad_message_id += 1
            return
        if not sa.is_established and exchange not in (ExchangeType.IKE_SA_INIT,
                                                      ExchangeType.IKE_AUTH):  # fmt: skip
            # The responder counts the IKE SA up once it sent its IKE_AUTH answer and may
            # start an exchange at once; if that answer is lost or overtaken, its request
            # reaches us first. Dropped unanswered (the Message ID stays unused), the
            # request is retransmitted and handled once IKE_AUTH is complete. Answering it
            # with an error would make the two ends disagree about what it did.
            self.counters.dropped_before_established += 1
            sa.log(f"{exchange_name(exchange)} request before IKE_AUTH completed: dropped")
            return
        if isinstance(msg, RemoteProtocolError):
            self._answer(None, msg, [], mid, exchange, now)
            return
        sa.log_message("received", msg)
        sa.now = now
        tasks: list[Task] = []

        def handle() -> list[Payload] | None:
            task = sa.responder_task(msg)
            tasks.append(task)
            task.process(msg, raw)
            return None if task.deferred else task.build()

        payloads, error = self._attempt(handle, exchange)
        if payloads is None:  # the task waits (e.g. for a RADIUS server): answered later
            self.deferred = (tasks[0], mid, exchange)
            return
        self._answer(tasks[0] if tasks else None, error, payloads, mid, exchange, now)

    def resume(self, now: float) -> None:
        """The deferred request's answer can now be built (the task has what it waited
        for): answer it as ``on_request`` would have."""
        if self.deferred is None:
            return
        task, mid, exchange = self.deferred
        self.deferred = None
        task.deferred = False
        self.sa.now = now

        def finish() -> list[Payload]:
            task.resume()
            return task.build()

        payloads, error = self._attempt(finish, exchange)
        self._answer(task, error, payloads or [], mid, exchange, now)

    def _attempt(
        self, step: Callable[[], list[Payload] | None], exchange: int
    ) -> tuple[list[Payload] | None, RemoteProtocolError | None]:
        """Run one step of answering a request: what it returns, or the error to answer
        with instead (whatever the peer's or a server's input made it raise)."""
        try:
            return step(), None
        except RemoteProtocolError as exc:
            return [], exc
        except LocalProtocolError as exc:
            # Our own failure (e.g. a key that cannot sign what the peer accepts).
            notify = _LOCAL_FAILURE.get(exchange, 43)
            return [], RemoteProtocolError(f"local failure: {exc}", notify=notify)
        except Exception as exc:  # the input raised it, whatever it is
            return [], self._unexpected(exc)

    def _answer(self, task: Task | None, error: RemoteProtocolError | None,
                payloads: list[Payload], mid: int, exchange: int, now: float) -> None:  # fmt: skip
        sa = self.sa
        if error is not None:
            self.counters.protocol_errors += 1
            payloads = [NotifyPayload(error.notify, error.notify_data), *error.payloads]
        response = Message(sa.spi_i, sa.spi_r, exchange, mid, True, sa.initiator,
                           tuple(payloads))  # fmt: skip
        datagrams = sa.encode(response)
        self.cached = (mid, datagrams)
        self.peer_mid += 1
        sa.log_message("sending", response)
        sa.send(datagrams, sa.request_from)  # §2.11: to where the request came from
        if error is not None:
            if not sa.is_established and exchange in (ExchangeType.IKE_SA_INIT,
                                                      ExchangeType.IKE_AUTH):  # fmt: skip
                sa.destroy(f"{exchange_name(exchange)} refused: {error}")
            else:
                sa.log(f"answered {exchange_name(exchange)} with an error: {error}")
        elif task is not None:
            responded = getattr(task, "responded", None)
            if responded is not None:
                responded(datagrams[0])
        self.initiate(now)
