"""Values the client returns and the events it delivers.

All are frozen dataclasses. Fields added later (watch sequence numbers) come as new fields
with defaults, so code that builds or matches these keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True, order=True)
class FencingToken:
    """What a cluster's master gave a port when it granted it to this node: its epoch (the
    term it was elected in) and the reply's sequence in that epoch. Tokens of a port only
    grow from one owner to the next (a failover included), so storage that rejects a write
    with a lower token than one it has seen cannot be overwritten by an old owner. Compare
    them as tuples: ``(epoch, sequence)``."""

    epoch: int
    sequence: int


@dataclass(frozen=True)
class FailedPort:
    """A port that another node owns: the failed registration names the owner (discovery)."""

    port: str
    owner: str
    address: str | None = None


@dataclass(frozen=True)
class Registration:
    """Result of :meth:`Client.register`: the ports this node owns now (including ports it
    already owned) and those owned by other nodes. From a cluster's master, ``tokens`` gives
    each owned port its :class:`FencingToken` and ``epoch`` is the master's epoch (both empty
    from a switch that runs alone)."""

    owned: tuple[str, ...] = ()
    failed: tuple[FailedPort, ...] = ()
    tokens: Mapping[str, FencingToken] = field(default_factory=dict, compare=False)
    epoch: int | None = None

    def token(self, port: str) -> FencingToken | None:
        """The fencing token of an owned ``port`` (None alone, or if not owned)."""
        return self.tokens.get(port)


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
    were free and are now this node's. With a cluster, ``epoch`` is the master's epoch and
    ``previous_epoch`` the one before the connection was lost: when they differ the master
    changed (a failover), the new one started with an empty table, and every restored port
    has a new fencing token (:meth:`Client.fencing_token`)."""

    url: str
    restored: int
    lost: tuple[FailedPort, ...] = field(default_factory=tuple)
    acquired: tuple[str, ...] = field(default_factory=tuple)
    epoch: int | None = None
    previous_epoch: int | None = None

    @property
    def failover(self) -> bool:
        """Whether the master changed while the client was away."""
        return self.epoch is not None and self.previous_epoch is not None and self.epoch != self.previous_epoch


Event = Push | Released | Disconnected | Reconnected


# ---- coordination (issue 15) ----------------------------------------------------------------


@dataclass(frozen=True)
class WatchEvent:
    """Something a watch of this node saw (:meth:`Client.watch`). ``event`` is ``acquired``,
    ``released`` (with ``reason``) or ``moved`` (``previous`` owner) for a port, ``online``,
    ``offline`` (with ``reason``) or ``replaced`` for a node. ``seq`` numbers the event at
    switch instance ``instance``; the client keeps the watch's cursor and resumes from it
    after a reconnect."""

    watch: int
    event: str
    port: str | None = None
    node: str | None = None
    owner: str | None = None
    address: str | None = None
    reason: str | None = None
    previous: str | None = None
    seq: int = 0
    instance: int = 0


@dataclass(frozen=True)
class Missed:
    """Watch ``watch`` missed the events ``first..last`` (inclusive) of switch instance
    ``instance``: they left the switch's bounded history before the watch resumed. List
    what the watch covers to know where things stand now."""

    watch: int
    instance: int
    first: int
    last: int


@dataclass(frozen=True)
class HandedOver:
    """Another node handed ``port`` over to this one: it is held now (and re-registered after
    a reconnect). From a cluster's master the client registers it again at once, which gives
    it a fencing token of this node's (:meth:`Client.fencing_token` is None until then)."""

    port: str
    previous: str
    seq: int = 0


@dataclass(frozen=True)
class PortMoved:
    """``port`` moved from this node to ``to`` (a compare-and-register with this node's
    authority): it is no longer held."""

    port: str
    to: str
    seq: int = 0


@dataclass(frozen=True)
class Handover:
    """Result of :meth:`Client.handover`."""

    moved: tuple[str, ...] = ()
    not_owned: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()


@dataclass(frozen=True)
class Acknowledged:
    """Result of :meth:`Client.send_acked`: pushes queued and targets dropped, and how many
    of the pushes their receivers acknowledged (the rest went offline or did not
    acknowledge within a lease)."""

    delivered: int
    dropped: int
    acknowledged: int
    unacknowledged: int


Event = Push | Released | Disconnected | Reconnected | WatchEvent | Missed | HandedOver | PortMoved
