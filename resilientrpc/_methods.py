"""What both channels share about invoking one method, whichever driver runs the call.

* :class:`MethodCall` - a multicallable's common part: the method's defaults from the
  service config (``timeout`` caps the caller's, ``waitForReady`` fills it in), the
  :class:`~interceptors.details.CallDetails` of a call, and request serialization.
* :func:`chain` - the interceptor chain in grpc's order (first listed is outermost)
  around the driver's terminal step.
* :class:`EndpointTransport` and :func:`attempt_kwargs` - the bottom of the chain: one
  backend's grpc channel (sync or ``grpc.aio``), with its bytes-in / bytes-out
  multicallables cached per method, and the keyword arguments an attempt is sent with.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import grpc
import grpc.aio

from interceptors.details import AttemptDetails, CallDetails
from resilientrpc._calls import LocalRpcError
from resilientrpc.config import MethodConfig

__all__ = [
    "EndpointTransport",
    "Invoke",
    "Metadata",
    "MethodCall",
    "Serializer",
    "attempt_kwargs",
    "chain",
    "limit_requests",
    "limit_responses",
]

Serializer = Callable[[Any], bytes] | None
Deserializer = Callable[[bytes], Any] | None
Metadata = Sequence[tuple[str, str | bytes]] | None
#: One step of the chain: (call details, request or request iterator) -> call / outcome.
Invoke = Callable[[Any, Any], Any]


class EndpointTransport:
    """One backend's grpc channel, with its multicallables cached per method.

    The multicallables have no (de)serializers: requests arrive serialized once by the
    resilient channel, and responses go back up as bytes. ``channel`` may be a
    ``grpc.Channel`` or a ``grpc.aio.Channel``; both accept ``_registered_method``.
    """

    __slots__ = ("_ss", "_su", "_us", "_uu", "channel")

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self._uu: dict[str, Any] = {}
        self._us: dict[str, Any] = {}
        self._su: dict[str, Any] = {}
        self._ss: dict[str, Any] = {}

    def try_to_connect(self) -> None:
        """Ask the channel to connect now if it is idle (no call needed to start it).

        A sync ``grpc.Channel`` connects lazily, on its first call or subscription, and
        ``subscribe`` would start a polling thread per channel; its C channel's
        ``check_connectivity_state(True)`` (what ``subscribe`` itself calls; probed with
        grpcio 1.85) starts the connection with no thread. Without this, a backend slow
        to connect is paid for twice: once by the watched connection, then again by the
        first call on the call connection.
        """
        channel = self.channel
        if isinstance(channel, grpc.aio.Channel):
            channel.get_state(try_to_connect=True)
            return
        core = getattr(channel, "_channel", None)
        check = getattr(core, "check_connectivity_state", None)
        if check is not None:
            check(True)

    def unary_unary(self, method: str) -> Any:
        callable_ = self._uu.get(method)
        if callable_ is None:
            callable_ = self._uu[method] = self.channel.unary_unary(method, _registered_method=True)
        return callable_

    def unary_stream(self, method: str) -> Any:
        callable_ = self._us.get(method)
        if callable_ is None:
            callable_ = self._us[method] = self.channel.unary_stream(
                method, _registered_method=True
            )
        return callable_

    def stream_unary(self, method: str) -> Any:
        callable_ = self._su.get(method)
        if callable_ is None:
            callable_ = self._su[method] = self.channel.stream_unary(
                method, _registered_method=True
            )
        return callable_

    def stream_stream(self, method: str) -> Any:
        callable_ = self._ss.get(method)
        if callable_ is None:
            callable_ = self._ss[method] = self.channel.stream_stream(
                method, _registered_method=True
            )
        return callable_


def attempt_kwargs(details: AttemptDetails) -> dict[str, Any]:
    """The keyword arguments one attempt is sent with on its endpoint's multicallable."""
    return {
        "timeout": details.timeout,
        "metadata": details.metadata,
        "credentials": details.credentials,
        "wait_for_ready": details.wait_for_ready,
        "compression": details.compression,
    }


def chain(interceptors: Sequence[Any], hook: str, terminal: Invoke) -> Invoke:
    """``terminal`` wrapped by ``interceptors`` (first listed is outermost), grpc's contract.

    The same composition serves both drivers: sync interceptors return calls, ``grpc.aio``
    ones return coroutines of calls (and the terminal is then a coroutine function).
    """
    invoke = terminal
    for interceptor in reversed(interceptors):
        invoke = functools.partial(getattr(interceptor, hook), invoke)
    return invoke


def _too_large(what: str, size: int, field: str, limit: int) -> LocalRpcError:
    return LocalRpcError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"{what} of {size} bytes is larger than the method's {field} ({limit})",
    )


def limit_requests(serializer: Serializer, limit: int | None) -> Serializer:
    """``serializer`` refusing a request larger than ``maxRequestMessageBytes``."""
    if limit is None:
        return serializer

    def serialize(request: Any) -> bytes:
        payload: bytes = request if serializer is None else serializer(request)
        if len(payload) > limit:
            raise _too_large("request", len(payload), "maxRequestMessageBytes", limit)
        return payload

    return serialize


def limit_responses(deserializer: Deserializer, limit: int | None) -> Deserializer:
    """``deserializer`` refusing a response larger than ``maxResponseMessageBytes``."""
    if limit is None:
        return deserializer

    def deserialize(payload: bytes) -> Any:
        if len(payload) > limit:
            raise _too_large("response", len(payload), "maxResponseMessageBytes", limit)
        return payload if deserializer is None else deserializer(payload)

    return deserialize


class MethodCall:
    """What every multicallable of one method shares: serialization and call defaults.

    The method config's ``timeout`` caps the caller's, ``waitForReady`` fills it in, and
    ``maxRequestMessageBytes`` / ``maxResponseMessageBytes`` are enforced where messages
    are (de)serialized: RESOURCE_EXHAUSTED, as grpc reports an oversized message.
    """

    __slots__ = ("_deserializer", "_method", "_serializer", "_timeout", "_wait_for_ready")

    def __init__(
        self,
        method: str,
        serializer: Serializer,
        deserializer: Deserializer,
        method_config: MethodConfig | None,
    ) -> None:
        self._method = method
        config = method_config
        self._serializer = limit_requests(
            serializer, config.max_request_message_bytes if config is not None else None
        )
        self._deserializer = limit_responses(
            deserializer, config.max_response_message_bytes if config is not None else None
        )
        self._timeout = config.timeout if config is not None else None
        self._wait_for_ready = config.wait_for_ready if config is not None else None

    def _details(
        self,
        timeout: float | None,
        metadata: Metadata,
        credentials: grpc.CallCredentials | None,
        wait_for_ready: bool | None,
        compression: grpc.Compression | None,
    ) -> CallDetails:
        limit = self._timeout
        if limit is not None and (timeout is None or timeout > limit):
            timeout = limit
        if wait_for_ready is None:
            wait_for_ready = self._wait_for_ready
        return CallDetails(
            self._method, timeout, metadata, credentials, wait_for_ready, compression
        )

    def _serialize(self, request: Any) -> Any:
        return request if self._serializer is None else self._serializer(request)

    def _serialize_all(self, requests: Iterable[Any]) -> Iterable[Any]:
        serializer = self._serializer
        return requests if serializer is None else map(serializer, requests)
