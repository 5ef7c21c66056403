"""Call details as the interceptor chain passes them: immutable namedtuples, replaced not mutated."""

from __future__ import annotations

import collections
from typing import Any

import grpc

__all__ = ["AttemptDetails", "CallDetails"]

_FIELDS = ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")


class CallDetails(  # type: ignore[misc]
    collections.namedtuple("CallDetails", _FIELDS),
    grpc.ClientCallDetails,
):
    """The details of one call, as ``grpc.ClientCallDetails``."""

    method: str
    timeout: float | None
    metadata: Any
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


class AttemptDetails(  # type: ignore[misc]
    collections.namedtuple("AttemptDetails", (*_FIELDS, "endpoint")),
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
