"""Values the client returns and the events it delivers.

All are frozen dataclasses. Fields the HA and coordination work will add (epoch, fencing
tokens, watch sequence numbers) will come as new fields with defaults, so code that builds or
matches these today keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FailedPort:
    """A port that another node owns: the failed registration names the owner (discovery)."""

    port: str
    owner: str
    address: str | None = None


@dataclass(frozen=True)
class Registration:
    """Result of :meth:`Client.register`: the ports this node owns now (including ports it
    already owned) and those owned by other nodes."""

    owned: tuple[str, ...] = ()
    failed: tuple[FailedPort, ...] = ()


@dataclass(frozen=True)
class Unregistration:
    """Result of :meth:`Client.unregister`."""

    released: tuple[str, ...] = ()
    not_owned: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()


@dataclass(frozen=True)
class SendReport:
    """Result of :meth:`Client.send_report`: pushes queued and targets dropped."""

    delivered: int
    dropped: int


@dataclass(frozen=True)
class PortOwner:
    """One port of :meth:`Client.query_ports`; ``owner`` is None if nobody owns it."""

    port: str
    owner: str | None
    address: str | None


@dataclass(frozen=True)
class NodeInfo:
    """One node of :meth:`Client.query_nodes`."""

    node: str
    online: bool
    address: str | None
    ports: int


@dataclass(frozen=True)
class Message:
    """An outgoing message: to ``port`` (``""`` broadcasts) or to every port of ``ports``."""

    body: str
    port: str | None = None
    ports: tuple[str, ...] | None = None

    def to_json(self) -> dict:
        if (self.port is None) == (self.ports is None):
            raise ValueError("a Message needs exactly one of port or ports")
        if self.ports is not None:
            return {"ports": list(self.ports), "body": self.body}
        return {"port": self.port, "body": self.body}


# ---- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Push:
    """A message pushed to this node for ``port`` (``""`` for a broadcast)."""

    port: str
    body: str


@dataclass(frozen=True)
class Released:
    """A port this node subscribed to was released (``reason``: ``unregistered``,
    ``node_offline`` or ``replaced``). Register it to take it over."""

    port: str
    reason: str


@dataclass(frozen=True)
class Disconnected:
    """The receiving connection was lost. The switch released every port of the node; the
    client reconnects (unless ``final``) and then sends :class:`Reconnected`. ``error`` says
    why (e.g. :class:`~reaktor_client.errors.LeaseExpired`)."""

    error: Exception
    held: int
    final: bool = False


@dataclass(frozen=True)
class Reconnected:
    """The client is connected again (to ``url``) and re-registered the ports it held:
    ``restored`` of them are this node's again; ``lost`` went to another node meanwhile
    (they are no longer held); ``acquired`` are ports asked for with ``subscribe=True`` that
    were free and are now this node's."""

    url: str
    restored: int
    lost: tuple[FailedPort, ...] = field(default_factory=tuple)
    acquired: tuple[str, ...] = field(default_factory=tuple)


Event = Push | Released | Disconnected | Reconnected
