"""Call details as the interceptor chain passes them: namedtuples, replaced, never mutated."""

from __future__ import annotations

import collections
from typing import Any

import grpc

__all__ = ["AttemptDetails", "AttemptRecord", "CallDetails", "RetryCallDetails"]


class CallDetails(
    collections.namedtuple(
        "CallDetails",
        ["method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"],
    ),
    grpc.ClientCallDetails,
):
    """The details of one call, as ``grpc.ClientCallDetails``."""

    method: str
    timeout: float | None
    metadata: Any
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


class AttemptDetails(
    collections.namedtuple(
        "AttemptDetails",
        [
            "method",
            "timeout",
            "metadata",
            "credentials",
            "wait_for_ready",
            "compression",
            "endpoint",
        ],
    ),
    grpc.ClientCallDetails,
):
    """Call details of one attempt, with the endpoint the balancing step chose for it.

    Only the balancing interceptor makes these, and only the endpoint transport below it
    reads ``endpoint``; interceptors above never see them.
    """

    method: str
    timeout: float | None
    metadata: Any
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None
    endpoint: Any


class AttemptRecord:
    """What a retry step and the balancing step below it tell each other about one attempt.

    The retry step puts the addresses the call's earlier attempts went to in ``tried``; the
    balancing step avoids them while it can (failover) and writes the endpoint it chose
    into ``address``. On a plain grpc channel nobody reads ``tried`` and ``address``
    stays None.

    ``trace`` carries the call's tracing (:class:`interceptors.spans.CallTrace`: its
    OpenTelemetry Context and call span) from the tracing step down to the balancing
    step, whatever thread sends the attempt; None when the call is not traced. The retry
    step copies it into each attempt's record with the attempt's 1-based ``number`` and
    whether it is a ``hedge``.
    """

    __slots__ = ("address", "hedge", "number", "trace", "tried")

    def __init__(self, tried: frozenset[str] = frozenset(), trace: Any = None) -> None:
        self.tried = tried
        self.address: str | None = None
        self.trace = trace
        self.number = 1
        self.hedge = False

    def __repr__(self) -> str:
        return f"AttemptRecord(tried={sorted(self.tried)}, address={self.address!r})"


class RetryCallDetails(
    collections.namedtuple(
        "RetryCallDetails",
        [
            "method",
            "timeout",
            "metadata",
            "credentials",
            "wait_for_ready",
            "compression",
            "attempt",
        ],
    ),
    grpc.ClientCallDetails,
):
    """The details of one attempt the retry step sends: call details plus its
    :class:`AttemptRecord`. grpc's own channel reads only the usual six fields."""

    method: str
    timeout: float | None
    metadata: Any
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None
    attempt: AttemptRecord
