"""espfast.control: a sans-I/O IKEv2 protocol library (RFC 7296).

No sockets, no clock, no threads and no randomness of its own: callers feed datagrams and
the current time in, and take datagrams to send and events out.

The simplest way in is ``manager.IkeManager``: every IKE SA of the daemon behind one face
(dispatch by SPI, the responder front door, rekeyed IKE SAs swapped in, one event queue,
datagrams as (data, remote, local port)). Underneath, one IkeSa at a time::

    from espfast.control.config import AuthConfig, ChildConfig, IkeConfig
    from espfast.control.ike_sa import IkeSa
    from espfast.control.responder import Responder
    from espfast.control.rng import SystemRng

    # initiator
    sa = IkeSa.initiate(config, local=("198.18.0.1", 500), remote=("198.18.0.2", 500),
                        rng=SystemRng(), now=loop.time())
    # responder: datagrams whose responder SPI is 0 (or unknown) go to the front door
    front = Responder([config, ...], local=("198.18.0.2", 500), rng=SystemRng())
    new_sa = front.receive_datagram(data, addr, now)      # keep it by new_sa.spi_r
    # every other datagram goes to the IkeSa whose SPI is in the header (bytes 0-16)
    sa.receive_datagram(data, addr, now, local=(our_ip, port_it_arrived_on))
    for data, addr in sa.datagrams_to_send(now) + front.datagrams_to_send(now): ...
        # send from sa.local's port; port 4500 means: through the dataplane (send_ike),
        # which adds the non-ESP marker (RFC 3948)
    sa.handle_timer(now) when now >= sa.get_timer()       # retransmissions, half-open expiry
    while (event := sa.next_event()) is not None: ...      # events.py: IkeSaUp, ChildSaUp...
    sa.create_child(child_config, now); sa.delete_child(spi_in, now); sa.delete(now)
    sa.rekey_child(spi_in, now); sa.check_liveness(now); sa.status()

Lifetimes (config.Lifetime, strongSwan's rekey_time/life_time/rand_time/reauth_time)
and dead peer detection (IkeConfig.dpd_delay) run on the same timers; feed the
dataplane's counters with ``sa.child_traffic(spi_in, octets, packets, now, seq_out=...)``
(rekey_bytes/rekey_packets, and ``seq_out``, the outbound SA's SaStats.seq, so that an
SA nearing sequence-number exhaustion rekeys in time) and inbound ESP with
``sa.peer_alive(now)``. When ``sa.nat_local`` is set (we are behind a NAT), the
shell sends a one-byte 0xFF NAT-keepalive to ``sa.remote`` every 20 s (RFC 3948 §2.3).
Events: IkeSaUp/Down/Rekeyed/Reauthenticating, ChildSaUp (keys for the dataplane, in its
Transform names)/Down/Rekeyed/Failed, PeerAddressChanged (events.py). IkeManager
(manager.py) adds dpd_action/close_action (restart, traps) and shutdown().

``now`` is a monotonic clock in seconds. Certificate authentication: build the AuthConfig
with ``auth.certificate_auth(credential, trust_store, time.time)`` (a wall clock for
certificate validity, injected). Proposals use strongSwan's keywords (proposals.py).
"""
