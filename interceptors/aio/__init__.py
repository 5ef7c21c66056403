"""The ``grpc.aio`` twins of :mod:`interceptors`: the same steps as async client interceptors.

The first interceptor listed is outermost, as in ``grpc.aio.insecure_channel(...,
interceptors=[...])``. The balancing step is the terminal-most one inside a
:class:`resilientrpc.aio.ResilientChannel`.
"""

from __future__ import annotations

from interceptors.aio.balancing import BalancingInterceptor, FinishedCall
from interceptors.aio.retry import RetryInterceptor
from interceptors.aio.tracing import TracingInterceptor

__all__ = ["BalancingInterceptor", "FinishedCall", "RetryInterceptor", "TracingInterceptor"]
