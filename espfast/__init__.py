"""espfast: a userspace IKEv2/IPsec VPN for Linux."""

__version__ = "0.1.0"
