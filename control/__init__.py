"""espfast.control: a sans-I/O IKEv2 protocol library (RFC 7296).

No sockets, no clock, no threads and no randomness of its own: callers feed datagrams and
the current time in, and take datagrams to send and events out.
"""
