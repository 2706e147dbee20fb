"""asyncio client of the reaktor port switch (BYPSS).

::

    import reaktor_client

    client = await reaktor_client.connect("ws://127.0.0.1:8080", "chat-1", "demo-chat",
                                          address="chat-1.local:9000")
    reg = await client.register(["user:alice"], subscribe=True)
    await client.send("user:bob", "hello")
    async for event in client.events():
        ...

:func:`connect` returns a :class:`Client` that keeps the node's receiving connection open,
renews its lease, reconnects and re-registers its ports, batches calls and delivers pushes
through a bounded buffer (see :mod:`reaktor_client.client` for the back-pressure policy).
:func:`watch` opens a :class:`Watcher`, a watcher that is not a node (it follows ports and
nodes, resuming after reconnects). :class:`Connection` is the low-level receiving connection
without any of that. Errors are in
:mod:`reaktor_client.errors`, values and events in :mod:`reaktor_client.types`.
"""

from . import errors
from .batching import Limits
from .client import Client, ClientOptions, backoff_delay, connect
from .connection import Connection
from .errors import (BadRequest, CallTimeout, ClientClosed, Closed, ConnectFailed, ConnectionLost,
                     Forbidden, LeaseExpired, LimitExceeded, MasterLost, MessageTooBig, Misdirected,
                     NotMaster, NotOnline, RateLimited, Replaced, SessionReplaced, SlowConsumer,
                     SwitchError, TableFull, TokenRevoked, Unauthorized, Unavailable)
from .watcher import Watcher, watch
from .types import (Acknowledged, Disconnected, Event, FailedPort, FencingToken, HandedOver,
                    Handover, Message, Missed, NodeInfo, PortMoved, PortOwner, Push, Reconnected,
                    Registration, Released, SendReport, Unregistration, WatchEvent)

__all__ = [
    "connect", "watch", "Watcher", "Client", "ClientOptions", "Connection", "Limits", "backoff_delay", "errors",
    "SwitchError", "Unauthorized", "Forbidden", "BadRequest", "LimitExceeded", "RateLimited",
    "TableFull", "NotOnline", "Misdirected", "Unavailable", "NotMaster", "ConnectFailed",
    "ConnectionLost", "Closed", "Replaced", "LeaseExpired", "SlowConsumer", "MasterLost", "MessageTooBig",
    "ClientClosed", "CallTimeout", "SessionReplaced", "TokenRevoked",
    "FailedPort", "FencingToken", "Registration", "Unregistration", "SendReport", "PortOwner", "NodeInfo",
    "Message", "Push", "Released", "Disconnected", "Reconnected", "Event",
    "WatchEvent", "Missed", "HandedOver", "PortMoved", "Handover", "Acknowledged",
]
