"""Call details as the interceptor chain passes them: namedtuples, replaced, never mutated."""

from __future__ import annotations

import collections
from typing import Any

import grpc

__all__ = ["AttemptDetails", "CallDetails"]


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
