"""gRPC client interceptors that plug resilientrpc's engine into a channel.

The first interceptor listed is outermost, as in ``grpc.intercept_channel``. The
balancing step is the terminal-most one inside a :class:`resilientrpc.ResilientChannel`.
"""

from __future__ import annotations

from interceptors.balancing import BalancingInterceptor
from interceptors.details import AttemptDetails, AttemptRecord, CallDetails, RetryCallDetails
from interceptors.retry import RetryInterceptor
from interceptors.tracing import TracingInterceptor

__all__ = [
    "AttemptDetails",
    "AttemptRecord",
    "BalancingInterceptor",
    "CallDetails",
    "RetryCallDetails",
    "RetryInterceptor",
    "TracingInterceptor",
]
