"""resilientrpc: client-side load balancing and resilience middleware for gRPC in Python.

Wrap your generated stubs in one :class:`ResilientChannel` and every call is spread over
the healthy backends by the configured strategy.
"""

from __future__ import annotations

from resilientrpc.channel import ResilientChannel
from resilientrpc.endpoint import EndpointStatus, Outcome
from resilientrpc.errors import ConfigError, ResilientRpcError
from resilientrpc.load_report import LoadReport

__all__ = [
    "ConfigError",
    "EndpointStatus",
    "LoadReport",
    "Outcome",
    "ResilientChannel",
    "ResilientRpcError",
    "__version__",
]

__version__ = "0.1.0"
