"""The exception tree of resilientrpc.

Configuration and input problems raise :class:`ConfigError` (a ``ValueError``) that names
the path of the offending field, before anything is started. Failed RPCs are never
wrapped: they stay :class:`grpc.RpcError` with the real status code, and the client adds
what it tried to the details.
"""

from __future__ import annotations

__all__ = ["ConfigError", "ResilientRpcError"]


class ResilientRpcError(Exception):
    """Base class of every exception resilientrpc raises on its own account."""


class ConfigError(ResilientRpcError, ValueError):
    """A configuration value or constructor argument is invalid.

    ``path`` is where the value sits, written the way a person would point at it in the
    service config JSON: ``methodConfig[0].retryPolicy.maxAttempts``, ``targets[2]``.

    >>> str(ConfigError("methodConfig[0].timeout", "expected a duration like '1.5s'"))
    "methodConfig[0].timeout: expected a duration like '1.5s'"
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message
