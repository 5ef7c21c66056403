"""The synchronous :class:`ResilientChannel`: a ``grpc.Channel`` over many backends.

Each call is serialized once, passed down the interceptor chain (the balancing step last),
and sent on the chosen endpoint's own grpc channel as bytes; responses are deserialized
for the caller. Background work runs as asyncio tasks on one loop thread per channel.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc
import grpc.aio

from interceptors.balancing import NOT_NOW, BalancingInterceptor
from interceptors.details import AttemptDetails, AttemptRecord
from interceptors.retry import RetryInterceptor
from interceptors.spans import CallTrace, end_raised
from interceptors.tracing import (
    TracingInterceptor,
    channel_tracer,
    ended,
    register_method,
    watch,
)
from resilientrpc._calls import (
    Deserializer,
    ResponseFuture,
    ResponseStream,
    UnaryOutcome,
    deserialize_or_raise,
    guarded,
)
from resilientrpc._core import ChannelCore
from resilientrpc._event_listeners import (
    EventCallback,
    EventListeners,
    RetryCallback,
    RetryListeners,
)
from resilientrpc._loop import CallbackThread, LoopThread
from resilientrpc._methods import (
    EndpointTransport,
    Invoke,
    Metadata,
    MethodCall,
    Serializer,
    attempt_kwargs,
    chain,
)
from resilientrpc.config import ServiceConfig
from resilientrpc.endpoint import Endpoint, EndpointStatus
from resilientrpc.options import ChannelOptions
from resilientrpc.picker import Picker
from resilientrpc.router import SyncRouter
from resilientrpc.supervisor import WATCH_SETTLE_TIMEOUT, Supervisor

__all__ = ["ResilientChannel"]

_log = logging.getLogger(__name__)
_OK = grpc.StatusCode.OK
_channel_ids = itertools.count(1)
#: How long close() waits for the background to shut down before stopping the loop anyway.
_CLOSE_TIMEOUT = 30.0


# The bottom of the chain: send one attempt on the endpoint the balancing step chose.
def _send_unary_blocking(details: AttemptDetails, payload: Any) -> Any:
    callable_ = details.endpoint.transport.unary_unary(details.method)
    try:
        response, call = callable_.with_call(payload, **attempt_kwargs(details))
    except grpc.RpcError as error:
        return error
    return UnaryOutcome(response, call)


def _send_unary_future(details: AttemptDetails, payload: Any) -> Any:
    return details.endpoint.transport.unary_unary(details.method).future(
        payload, **attempt_kwargs(details)
    )


def _send_unary_stream(details: AttemptDetails, payload: Any) -> Any:
    return details.endpoint.transport.unary_stream(details.method)(
        payload, **attempt_kwargs(details)
    )


def _send_stream_blocking(details: AttemptDetails, payloads: Iterator[Any]) -> Any:
    callable_ = details.endpoint.transport.stream_unary(details.method)
    try:
        response, call = callable_.with_call(payloads, **attempt_kwargs(details))
    except grpc.RpcError as error:
        return error
    return UnaryOutcome(response, call)


def _send_stream_future(details: AttemptDetails, payloads: Iterator[Any]) -> Any:
    return details.endpoint.transport.stream_unary(details.method).future(
        payloads, **attempt_kwargs(details)
    )


def _send_stream_stream(details: AttemptDetails, payloads: Iterator[Any]) -> Any:
    return details.endpoint.transport.stream_stream(details.method)(
        payloads, **attempt_kwargs(details)
    )


class _UnaryUnary(MethodCall, grpc.UnaryUnaryMultiCallable):
    __slots__ = (
        "_below_retry",
        "_blocking",
        "_channel",
        "_deliver",
        "_direct",
        "_future",
        "_per_attempt",
        "_retrier",
        "_tracer",
        "_untraced",
    )

    def __init__(self, channel: ResilientChannel, method: str, ser: Serializer, de: Deserializer):
        super().__init__(method, ser, de, channel.config.method_config(method))
        self._channel = channel  # a stub keeps its channel alive, as in grpc
        self._deliver = channel._callbacks.run_soon  # user callbacks: never on grpc's threads
        self._direct = channel._direct
        hook = "intercept_unary_unary"
        self._future = channel._chain(hook, _send_unary_future, blocking=False, method=method)
        policy = channel._retry.policy(method)
        if policy.hedging is not None:  # hedges overlap: a blocking call waits on a future
            self._blocking = self._future
            self._direct = None  # the hot path sends one attempt: a hedged call never takes it
        else:
            self._blocking = channel._chain(hook, _send_unary_blocking, method=method)
        # A retried method's hot path: the first attempt as any call's, then the retry
        # step (tenacity) only if it failed, continuing below itself in the chain.
        self._retrier = channel._retry if policy.retry is not None else None
        self._per_attempt = None if policy.retry is None else policy.retry.per_attempt_recv_timeout
        self._below_retry = channel._chain(hook, _send_unary_blocking, traced=False)
        # A traced call's hot path: its span starts here, its attempt's in call_now; when
        # the call has to wait it takes the chain below the tracing step.
        self._tracer = channel._tracing
        self._untraced = channel._chain(hook, _send_unary_blocking, method=method, traced=False)

    def __call__(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Metadata = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        details = self._details(timeout, metadata, credentials, wait_for_ready, compression)
        payload = self._serialize(request)
        direct = self._direct
        if direct is not None:
            if self._tracer is not None:
                return self._traced(direct, self._tracer, details, payload)
            retrier = self._retrier
            if retrier is None:
                response = direct.call_now(details, payload)
            else:
                response = self._first_attempt(direct, retrier, details, payload)
            if response is not NOT_NOW:
                return deserialize_or_raise(self._deserializer, response)
        outcome = self._blocking(details, payload)
        return deserialize_or_raise(self._deserializer, outcome.result())

    def _traced(
        self, direct: BalancingInterceptor, tracer: TracingInterceptor, details: Any, payload: Any
    ) -> Any:
        """A traced call on the hot path: the tracing step's work, without the chain."""
        call, traced = tracer.begin(details)
        if call is None:  # tracing failed: the call goes on untraced
            outcome = self._untraced(details, payload)
            return deserialize_or_raise(self._deserializer, outcome.result())
        try:
            retrier = self._retrier
            if retrier is None:
                response = direct.call_now(traced, payload, traced.attempt)
            else:
                response = self._first_attempt(direct, retrier, traced, payload, call)
            if response is NOT_NOW:
                outcome = self._untraced(traced, payload)
                watch(call, outcome, ended(call))
                response = outcome.result()
            else:
                call.end(_OK, None)
        except BaseException as error:
            end_raised(call, error)
            raise
        return deserialize_or_raise(self._deserializer, response)

    def _first_attempt(
        self,
        direct: BalancingInterceptor,
        retrier: RetryInterceptor,
        details: Any,
        payload: Any,
        trace: CallTrace | None = None,
    ) -> Any:
        """A retried method's call on the hot path: the retry step joins only on failure."""
        record = AttemptRecord(trace=trace)
        timeout = details.timeout
        per_attempt = self._per_attempt
        binding = per_attempt is not None and (timeout is None or per_attempt < timeout)
        deadline = None if timeout is None else self._channel._clock() + timeout
        try:
            response = direct.call_now(
                details._replace(timeout=per_attempt) if binding else details, payload, record
            )
        except grpc.RpcError as error:
            retrier.budgets.called()
            outcome = retrier.first_failed(
                self._below_retry, details, payload, error, record, deadline, binding
            )
            return outcome.result()
        if response is not NOT_NOW:
            budgets = retrier.budgets
            if budgets:
                budgets.called()
                budgets.record(grpc.StatusCode.OK, False)
        return response

    def with_call(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Metadata = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> tuple[Any, grpc.Call]:
        details = self._details(timeout, metadata, credentials, wait_for_ready, compression)
        outcome = self._blocking(details, self._serialize(request))
        call = ResponseFuture(outcome, self._deserializer)  # result() is the message
        return call.result(), call

    def future(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Metadata = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        details = self._details(timeout, metadata, credentials, wait_for_ready, compression)
        call = self._future(details, self._serialize(request))
        return ResponseFuture(call, self._deserializer, self._deliver)


class _UnaryStream(MethodCall, grpc.UnaryStreamMultiCallable):
    __slots__ = ("_channel", "_deliver", "_invoke")

    def __init__(self, channel: ResilientChannel, method: str, ser: Serializer, de: Deserializer):
        super().__init__(method, ser, de, channel.config.method_config(method))
        self._channel = channel  # a stub keeps its channel alive, as in grpc
        self._deliver = channel._callbacks.run_soon  # user callbacks: never on grpc's threads
        self._invoke = channel._chain(
            "intercept_unary_stream", _send_unary_stream, blocking=False, method=method
        )

    def __call__(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Metadata = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        details = self._details(timeout, metadata, credentials, wait_for_ready, compression)
        call = self._invoke(details, self._serialize(request))
        return ResponseStream(call, self._deserializer, self._deliver)


class _StreamUnary(MethodCall, grpc.StreamUnaryMultiCallable):
    __slots__ = ("_blocking", "_channel", "_deliver", "_future")

    def __init__(self, channel: ResilientChannel, method: str, ser: Serializer, de: Deserializer):
        super().__init__(method, ser, de, channel.config.method_config(method))
        self._channel = channel  # a stub keeps its channel alive, as in grpc
        self._deliver = channel._callbacks.run_soon  # user callbacks: never on grpc's threads
        self._blocking = channel._chain(
            "intercept_stream_unary", _send_stream_blocking, method=method
        )
        self._future = channel._chain(
            "intercept_stream_unary", _send_stream_future, blocking=False, method=method
        )

    def __call__(
        self,
        request_iterator: Iterator[Any],
        timeout: float | None = None,
        metadata: Metadata = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        return self.with_call(
            request_iterator, timeout, metadata, credentials, wait_for_ready, compression
        )[0]

    def with_call(
        self,
        request_iterator: Iterator[Any],
        timeout: float | None = None,
        metadata: Metadata = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> tuple[Any, grpc.Call]:
        details = self._details(timeout, metadata, credentials, wait_for_ready, compression)
        outcome = self._blocking(details, self._serialize_all(request_iterator))
        call = ResponseFuture(outcome, self._deserializer)  # result() is the message
        return call.result(), call

    def future(
        self,
        request_iterator: Iterator[Any],
        timeout: float | None = None,
        metadata: Metadata = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        details = self._details(timeout, metadata, credentials, wait_for_ready, compression)
        call = self._future(details, self._serialize_all(request_iterator))
        return ResponseFuture(call, self._deserializer, self._deliver)


class _StreamStream(MethodCall, grpc.StreamStreamMultiCallable):
    __slots__ = ("_channel", "_deliver", "_invoke")

    def __init__(self, channel: ResilientChannel, method: str, ser: Serializer, de: Deserializer):
        super().__init__(method, ser, de, channel.config.method_config(method))
        self._channel = channel  # a stub keeps its channel alive, as in grpc
        self._deliver = channel._callbacks.run_soon  # user callbacks: never on grpc's threads
        self._invoke = channel._chain(
            "intercept_stream_stream", _send_stream_stream, blocking=False, method=method
        )

    def __call__(
        self,
        request_iterator: Iterator[Any],
        timeout: float | None = None,
        metadata: Metadata = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        details = self._details(timeout, metadata, credentials, wait_for_ready, compression)
        call = self._invoke(details, self._serialize_all(request_iterator))
        return ResponseStream(call, self._deserializer, self._deliver)


async def _start(supervisor: Supervisor) -> None:
    supervisor.start()


def _connector(options: ChannelOptions) -> Callable[[Endpoint], grpc.aio.Channel]:
    """Opens an endpoint's channels: a sync one for calls, an aio one to watch (and check
    health on), both on one connection (:meth:`ChannelOptions.watch_channel`)."""

    def connect(endpoint: Endpoint) -> grpc.aio.Channel:
        endpoint.transport = EndpointTransport(options.sync_channel(endpoint.address))
        endpoint.transport.try_to_connect()  # in step with the watched connection
        return options.watch_channel(endpoint.address)

    return connect


async def _disconnect(endpoint: Endpoint, control: grpc.aio.Channel) -> None:
    await control.close()
    transport = endpoint.transport
    if transport is not None:
        transport.channel.close()


class _Subscriptions:
    """Connectivity subscribers, told of every change in order on the callback thread.

    Re-entrancy: a subscriber may be the last reference to an object whose finaliser
    unsubscribes (grpc's ``channel_ready_future`` does, in ``__del__``). So no reference
    to a callback is ever dropped while ``_lock`` is held: :meth:`clear` swaps the table
    out and lets it go after releasing the lock, and callbacks run outside it.
    """

    def __init__(self, callbacks: CallbackThread) -> None:
        self._callbacks = callbacks
        self._lock = threading.Lock()
        self._last: dict[Callable[[grpc.ChannelConnectivity], None], Any] = {}

    def add(self, callback: Callable[[grpc.ChannelConnectivity], None], state: Any) -> None:
        with self._lock:
            self._last[callback] = None
        self._callbacks.submit(functools.partial(self._deliver, callback, state))

    def remove(self, callback: Callable[[grpc.ChannelConnectivity], None]) -> None:
        with self._lock:
            # The stored key (an equal callable) may hold the last reference to an object
            # with a finaliser: take it out whole and let it go after the lock.
            stored = next((key for key in self._last if key == callback), None)
            if stored is not None:
                del self._last[stored]
        del stored

    def clear(self) -> None:
        with self._lock:
            dropped, self._last = self._last, {}
        dropped.clear()  # finalisers of dropped subscribers may unsubscribe: outside the lock

    def on_picker(self, picker: Picker) -> None:
        """The balancer's listener: queue the new state for every subscriber."""
        with self._lock:
            callbacks = list(self._last)
        for callback in callbacks:
            self._callbacks.submit(functools.partial(self._deliver, callback, picker.state))

    def _deliver(
        self, callback: Callable[[grpc.ChannelConnectivity], None], state: grpc.ChannelConnectivity
    ) -> None:
        with self._lock:
            if callback not in self._last or self._last[callback] is state:
                return
            self._last[callback] = state
        guarded(callback, state)


def _collected(
    description: str, loop: LoopThread, supervisor: Supervisor, callbacks: CallbackThread
) -> None:
    """A channel was garbage-collected unclosed: warn, and stop its background anyway.

    A finaliser runs on whichever thread the collector happens to run, possibly the
    loop's own or one holding a lock of ours, so this only queues the shutdown onto the
    loop and waits for nothing.
    """
    warnings.warn(f"unclosed {description}", ResourceWarning, stacklevel=1)
    loop.abandon(_shut_down(supervisor, callbacks))


async def _shut_down(supervisor: Supervisor, callbacks: CallbackThread) -> None:
    """Close the supervisor, then let the callback thread end; waits for no thread."""
    try:
        await supervisor.aclose()
    finally:
        callbacks.stop(wait=False)


class ResilientChannel(grpc.Channel):
    """A ``grpc.Channel`` that spreads every call over many backends.

    >>> with ResilientChannel(["127.0.0.1:50051", "127.0.0.1:50052"]) as channel:  # doctest: +SKIP
    ...     reply = EchoStub(channel).Echo(EchoRequest(message="hi"), timeout=1.0)

    ``targets`` is a list of ``"host:port"`` strings or one target URI (``static:///``,
    ``ipv4:``, ``ipv6:``, ``dns:///``); ``config`` a gRPC service config (dict, JSON text
    or path). ``credentials`` (TLS) and ``options`` apply to every backend connection.
    Everything is validated before anything starts; a bad value raises
    :class:`resilientrpc.ConfigError` naming the field.
    """

    def __init__(
        self,
        targets: Sequence[str] | str,
        *,
        config: Any = None,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] | None = None,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Validate everything first: nothing starts on bad input.
        core = ChannelCore.build(
            targets, config=config, credentials=credentials, options=options, clock=clock
        )
        self.config: ServiceConfig = core.config
        target = core.target
        self._options = core.options
        self._clock = clock
        self._balancer = core.balancer
        # Tracing and metrics, outermost, only when a tracer or a meter provider is
        # given: neither, no step at all. Built before any thread starts: a provider that
        # raises here leaves nothing running.
        self._tracing = channel_tracer(
            TracingInterceptor,
            tracer_provider,
            meter_provider,
            strategy=self._balancer.strategy.name,
            target=targets,
            statuses=self._balancer.statuses,
        )
        self._loop = LoopThread(f"resilientrpc-{next(_channel_ids)}")
        self._callbacks = CallbackThread(f"{self._loop.thread.name}-callbacks")
        # Deferred calls are started and failed right on the loop, where pickers are
        # published and deadline timers fire: neither runs user code (a call's done
        # callbacks go to the callback thread), and a user callback waiting for such a
        # call must not be what stands between it and its start.
        self._router = SyncRouter(self._balancer, clock=clock, call_later=self._loop.call_later)
        balancing = BalancingInterceptor(
            self._router, with_load=core.uses_load_reports, clock=clock
        )
        self._interceptors: list[Any] = [balancing]
        # Per-method retries and hedging (methodConfig), above the balancing step; its
        # timers run on the background loop.
        self._event_listeners = EventListeners(self._callbacks.submit)
        self._retry_listeners = RetryListeners(self._callbacks.submit)
        self._retry = RetryInterceptor(
            core.config,
            call_later=self._loop.call_later,
            clock=clock,
            buffer_limit=core.options.retry_buffer_limit,
            events=self._retry_listeners.on_event,
        )
        # Futures and streams must not block their caller: their chains end in the
        # deferring twin of the balancing step.
        self._deferring = balancing.deferring()
        self._subscriptions = _Subscriptions(self._callbacks)
        self._closed = False
        self._close_lock = threading.Lock()
        self._close_done = threading.Event()
        self._balancer.add_listener(self._subscriptions.on_picker)
        self._balancer.add_event_listener(self._event_listeners.on_event)
        if self._tracing is not None:
            self._event_listeners.add(self._tracing.endpoint_listener())
        # Nothing in the background refers back to the channel, so an unclosed channel
        # that nobody (no stub) holds any more is collected, and this stops its work.
        # Closing waits for grpc.aio to end the watches of the watch-only channels, so
        # nothing reaches the loop after stop() closed it (see Supervisor._state_change).
        self._supervisor = Supervisor(
            self._balancer,
            target,
            connect=_connector(self._options),
            disconnect=_disconnect,
            watch_settle_timeout=WATCH_SETTLE_TIMEOUT,
            health_check=core.config.health_check,
            outliers=core.config.effective_outlier_detection,
        )
        try:
            self._loop.run(_start(self._supervisor))
        except BaseException:  # leave nothing half-started: close what did start
            try:
                self._loop.run(self._supervisor.aclose(), timeout=_CLOSE_TIMEOUT)
            finally:
                self._loop.stop()
                self._callbacks.stop()
            raise
        self._finalizer = weakref.finalize(
            self, _collected, repr(self), self._loop, self._supervisor, self._callbacks
        )

    # -- the interceptor chain -----------------------------------------------------------
    def _chain(
        self,
        hook: str,
        terminal: Invoke,
        *,
        blocking: bool = True,
        method: str | None = None,
        traced: bool = True,
    ) -> Invoke:
        """The chain of ``hook`` ending in ``terminal``; with the retry step on top when
        ``method`` has a retry or hedging policy, and the tracing step above everything
        when the channel has a tracer provider (unless not ``traced``: the hot path
        traces the call itself)."""
        steps = self._interceptors if blocking else [*self._interceptors[:-1], self._deferring]
        if method is not None:
            policy = self._retry.policy(method)
            if policy.retry is not None or policy.hedging is not None:
                steps = [self._retry.view(blocking=blocking), *steps]
        if self._tracing is not None and traced:
            steps = [self._tracing, *steps]
        return chain(steps, hook, terminal)

    @property
    def _direct(self) -> BalancingInterceptor | None:
        """The balancing step, when only the channel's own retry and tracing steps may
        stand in front of it (the hot path does their work itself)."""
        if len(self._interceptors) == 1 and not self._balancer.strategy.uses_load_reports:
            direct: BalancingInterceptor = self._interceptors[0]
            return direct
        return None

    # -- grpc.Channel --------------------------------------------------------------------
    def unary_unary(
        self,
        method: str,
        request_serializer: Serializer = None,
        response_deserializer: Deserializer = None,
        _registered_method: bool | None = False,
    ) -> grpc.UnaryUnaryMultiCallable:
        register_method(self._tracing, method, _registered_method)
        return _UnaryUnary(self, method, request_serializer, response_deserializer)

    def unary_stream(
        self,
        method: str,
        request_serializer: Serializer = None,
        response_deserializer: Deserializer = None,
        _registered_method: bool | None = False,
    ) -> grpc.UnaryStreamMultiCallable:
        register_method(self._tracing, method, _registered_method)
        return _UnaryStream(self, method, request_serializer, response_deserializer)

    def stream_unary(
        self,
        method: str,
        request_serializer: Serializer = None,
        response_deserializer: Deserializer = None,
        _registered_method: bool | None = False,
    ) -> grpc.StreamUnaryMultiCallable:
        register_method(self._tracing, method, _registered_method)
        return _StreamUnary(self, method, request_serializer, response_deserializer)

    def stream_stream(
        self,
        method: str,
        request_serializer: Serializer = None,
        response_deserializer: Deserializer = None,
        _registered_method: bool | None = False,
    ) -> grpc.StreamStreamMultiCallable:
        register_method(self._tracing, method, _registered_method)
        return _StreamStream(self, method, request_serializer, response_deserializer)

    def subscribe(
        self, callback: Callable[[grpc.ChannelConnectivity], None], try_to_connect: bool = False
    ) -> None:
        """Call ``callback`` with the channel's state now and on every change.

        READY while at least one endpoint can take traffic, so
        ``grpc.channel_ready_future(channel)`` works. Callbacks run in order on the
        channel's callback thread, never under a lock and never on its background loop.
        """
        if not self._closed:
            self._subscriptions.add(callback, self._balancer.picker.state)

    def unsubscribe(self, callback: Callable[[grpc.ChannelConnectivity], None]) -> None:
        self._subscriptions.remove(callback)

    def add_event_listener(self, callback: EventCallback) -> None:
        """Call ``callback(event)`` with every endpoint transition, as it happens.

        Each :class:`~resilientrpc.events.EndpointEvent` (connectivity, health, missed
        heartbeat, ejection, half-open, readmission, panic) is the one kept on the
        endpoint (``endpoints()[i].events``). Callbacks run in order on the channel's
        callback thread, like ``subscribe`` callbacks: they may call or close the
        channel; one that raises is logged and the others still run. None runs after
        ``close()`` has returned.
        """
        self._event_listeners.add(callback)

    def remove_event_listener(self, callback: EventCallback) -> None:
        """Stop calling ``callback`` (added with :meth:`add_event_listener`)."""
        self._event_listeners.remove(callback)

    def add_retry_listener(self, callback: RetryCallback) -> None:
        """Call ``callback(event)`` with what the retry step does for every call.

        Each :class:`~resilientrpc.retry.RetryEvent` says what happened (``retry`` with its
        delay, ``transparent``, ``hedge``, ``refused`` by a budget, ``stopped``), to which
        method, attempt and endpoint, and why. Delivered like :meth:`add_event_listener`'s
        events, also as debug lines on ``resilientrpc.events``.
        """
        self._retry_listeners.add(callback)

    def remove_retry_listener(self, callback: RetryCallback) -> None:
        """Stop calling ``callback`` (added with :meth:`add_retry_listener`)."""
        self._retry_listeners.remove(callback)

    # -- status and lifetime ------------------------------------------------------------
    def endpoints(self) -> list[EndpointStatus]:
        """A snapshot of every endpoint's status."""
        return self._balancer.statuses()

    def get_state(self) -> grpc.ChannelConnectivity:
        """The channel's aggregate connectivity state now."""
        return self._balancer.picker.state

    def close(self) -> None:
        """Stop all background work, close every connection; idempotent.

        Calls still waiting for an endpoint end with CANCELLED; calls in flight are
        cancelled by their backend channels closing. Safe from anywhere: a second caller
        waits for the first to finish, except from the channel's own callback thread (a
        connectivity or done callback) or from a finaliser run on its background loop,
        where waiting could never end; those start the shutdown and return.
        """
        with self._close_lock:
            first, self._closed = not self._closed, True
        on_loop = threading.current_thread() is self._loop.thread
        inside = on_loop or self._callbacks.is_current()
        if not first:
            if not inside:
                self._close_done.wait()
            return
        self._finalizer.detach()
        self._retry.close()  # futures waiting to retry: their timers die with the loop
        try:
            if on_loop:  # cannot wait for the loop from the loop itself
                self._loop.abandon(_shut_down(self._supervisor, self._callbacks))
                return
            try:
                self._loop.run(self._supervisor.aclose(), timeout=_CLOSE_TIMEOUT)
            finally:
                self._loop.stop()
                self._callbacks.stop()  # delivers what closing settled (waiting calls: CANCELLED)
        finally:
            self._subscriptions.clear()
            self._close_done.set()

    def __enter__(self) -> ResilientChannel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        addresses = [e.address for e in self._balancer.endpoints]
        return f"<ResilientChannel {self._balancer.strategy.name} {addresses}>"
