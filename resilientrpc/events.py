"""Endpoint transitions as structured events: what changed, for which address, and why.

Every change that moves an endpoint in or out of traffic (health, a missed heartbeat,
an ejection, half-open trials, readmission, the channel entering or leaving panic mode)
is recorded by the balancer as one :class:`EndpointEvent`. The last few stay on the
endpoint (``channel.endpoints()[i].events``), every one is logged on the
``resilientrpc.events`` logger, and listeners added with
:meth:`~resilientrpc.balancer.Balancer.add_event_listener` receive each as it happens
(the tracing layer turns them into span events and metrics).

>>> event = EndpointEvent(EJECTED, "127.0.0.1:50051", "5 consecutive failures", 1.0, 2.0)
>>> event.kind, event.address
('ejected', '127.0.0.1:50051')
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "CONNECTIVITY",
    "EJECTED",
    "EVENT_KINDS",
    "HALF_OPEN",
    "HEALTH",
    "HEARTBEAT_MISSED",
    "PANIC_ENTERED",
    "PANIC_LEFT",
    "READMITTED",
    "EndpointEvent",
]

#: The connection went up or down (READY, TRANSIENT_FAILURE, ...).
CONNECTIVITY = "connectivity"
#: The health service reported a status (SERVING, NOT_SERVING, SERVICE_UNKNOWN, ...),
#: or its stream failed.
HEALTH = "health"
#: No sign of life for the heartbeat deadline (interval + timeout): declared dead.
HEARTBEAT_MISSED = "heartbeat_missed"
#: Outlier detection took the endpoint out of traffic.
EJECTED = "ejected"
#: The ejection time is over; a few trial calls decide what comes next.
HALF_OPEN = "half_open"
#: Trials passed (or the ejection was lifted): back to full traffic.
READMITTED = "readmitted"
#: Too few endpoints were available: calls spread over every connected endpoint.
PANIC_ENTERED = "panic_entered"
#: Enough endpoints are available again: unhealthy and ejected ones get no calls.
PANIC_LEFT = "panic_left"

EVENT_KINDS = (
    CONNECTIVITY,
    HEALTH,
    HEARTBEAT_MISSED,
    EJECTED,
    HALF_OPEN,
    READMITTED,
    PANIC_ENTERED,
    PANIC_LEFT,
)


class EndpointEvent(NamedTuple):
    """One transition of one endpoint (``address`` is ``""`` for channel-wide ones).

    ``time`` is wall-clock seconds (``time.time()``, for people and traces), ``monotonic``
    the channel clock's reading (for ordering and durations).
    """

    kind: str
    address: str
    reason: str
    time: float
    monotonic: float
