"""resilientrpc: client-side load balancing and resilience middleware for gRPC in Python.

Wrap your generated stubs in one :class:`ResilientChannel` and every call is spread over
the healthy backends by the configured strategy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from resilientrpc.channel import ResilientChannel


def __getattr__(name: str) -> Any:
    # The channel is loaded on first use: it stands on the interceptors package, which
    # itself imports the engine modules here, so either package can be imported first.
    if name == "ResilientChannel":
        from resilientrpc.channel import ResilientChannel  # noqa: PLC0415 - lazy: breaks the import cycle

        return ResilientChannel
    raise AttributeError(f"module 'resilientrpc' has no attribute {name!r}")
