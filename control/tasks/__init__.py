"""One task per exchange, role bound in the constructor (see STYLE.md, strongSwan task.h).

Initiator side: ``build()`` returns the request payloads, ``process(response)`` returns
True when the exchange is complete or False to send the (rebuilt) request again.
Responder side: ``process(request)`` then ``build()`` returns the response payloads.
A RemoteProtocolError raised by a responder's ``process`` becomes an error notify in the
response; raised by an initiator's ``process`` it fails the exchange.
"""
