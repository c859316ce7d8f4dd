"""Client profiles: what each kind of road-warrior client imports to reach a gateway.

``espfast profile -c GATEWAY.toml --conn NAME --for TYPE --server ADDRESS -o OUT`` reads
the gateway's config (espfast/config.py's loader) and writes, consistent with it (the
gateway's identity, the CA that signed its certificate, the client authentication method,
the strongest proposals both sides can do):

=============  ======================  ================================================
``--for``      module                  writes
=============  ======================  ================================================
ios, macos     :mod:`.apple`           a .mobileconfig (optionally CMS-signed)
windows        :mod:`.windows`         a PowerShell script (Add-VpnConnection ...)
android        :mod:`.sswan`           a .sswan profile for the strongSwan app
strongswan     :mod:`.swanctl`         a directory: swanctl.conf, x509/, x509ca/, private/
espfast        :mod:`.native`          a directory: client.toml and its certificates
=============  ======================  ================================================

:mod:`.gateway` derives what the gateway expects; :mod:`.choose` picks the proposals.
"""

PROFILE_TYPES = ("ios", "macos", "windows", "android", "strongswan", "espfast")
DIRECTORY_TYPES = ("strongswan", "espfast")  # -o names a directory for these
