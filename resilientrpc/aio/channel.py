"""The asyncio :class:`ResilientChannel`: a ``grpc.aio.Channel`` over many backends.

The twin of :mod:`resilientrpc.channel`, and as thin: validation, the balancer, the
strategies, the supervisor, per-method defaults and the interceptor chain are the same
code. Each call is serialized once, passed down the chain (the balancing step last) and
sent as bytes on the chosen endpoint's own ``grpc.aio`` channel - which is also the
connection the supervisor watches - and its responses are deserialized for the caller.

On the hot path (a READY picker, no interceptor in front of the balancing step) a call
picks its endpoint synchronously and the endpoint's call is returned at once, wrapped;
otherwise a task runs the chain, waiting for an endpoint when gRPC's semantics say so.
Background work runs on the caller's event loop: from the constructor when that runs
inside a loop, otherwise from the channel's first use there.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import warnings
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
import grpc.aio

from interceptors.aio.balancing import BalancingInterceptor, Start
from interceptors.aio.retry import RetryInterceptor, watch_first
from interceptors.aio.tracing import TracingInterceptor, end_when_settled, follow, started
from interceptors.details import AttemptDetails, AttemptRecord
from interceptors.spans import CallTrace, end_raised
from interceptors.tracing import channel_tracer, register_method
from resilientrpc._calls import Deserializer, LocalRpcError
from resilientrpc._core import ChannelCore
from resilientrpc._event_listeners import (
    EventCallback,
    EventListeners,
    RetryCallback,
    RetryListeners,
)
from resilientrpc._methods import (
    EndpointTransport,
    Invoke,
    Metadata,
    MethodCall,
    Serializer,
    chain,
)
from resilientrpc.aio._calls import (
    RequestPipe,
    StreamStreamCall,
    StreamUnaryCall,
    UnaryStreamCall,
    UnaryUnaryCall,
    check_metadata,
    rpc_error,
    serialize_requests,
)
from resilientrpc.aio.router import AsyncRouter
from resilientrpc.config import ServiceConfig
from resilientrpc.endpoint import Endpoint, EndpointStatus
from resilientrpc.options import ChannelOptions
from resilientrpc.supervisor import Supervisor

__all__ = ["ResilientChannel"]

_READY = grpc.ChannelConnectivity.READY
_SHUTDOWN = grpc.ChannelConnectivity.SHUTDOWN
#: Which of an endpoint transport's cached multicallables a call shape is sent on.
_Shape = Callable[[EndpointTransport, str], Any]


def _attempt_starter(shape: _Shape) -> Start:
    """How calls of one shape start an attempt: the bottom of the chain, and the hot path.

    The endpoint's cached multicallable called with keyword arguments, nothing built in
    between (this runs for every call).
    """

    def start_attempt(endpoint: Endpoint, details: Any, timeout: float | None, payload: Any) -> Any:
        send = shape(endpoint.transport, details.method)
        return send(
            payload,
            timeout=timeout,
            metadata=details.metadata,
            credentials=details.credentials,
            wait_for_ready=details.wait_for_ready,
            compression=details.compression,
        )

    return start_attempt


_start_unary_unary = _attempt_starter(EndpointTransport.unary_unary)
_start_unary_stream = _attempt_starter(EndpointTransport.unary_stream)
_start_stream_unary = _attempt_starter(EndpointTransport.stream_unary)
_start_stream_stream = _attempt_starter(EndpointTransport.stream_stream)


def _continuation(start: Start) -> Invoke:
    """``start`` as the coroutine continuation a ``grpc.aio`` interceptor awaits."""

    async def send(details: AttemptDetails, request: Any) -> Any:
        return start(details.endpoint, details, details.timeout, request)

    return send


def _failed(error: BaseException) -> asyncio.Future[Any]:
    """A chain that has already failed with ``error``, for a call's wrapper."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_exception(error)
    return future


def _connector(options: ChannelOptions) -> Callable[[Endpoint], grpc.aio.Channel]:
    """Opens an endpoint's one grpc.aio channel: for its calls, and watched."""

    def connect(endpoint: Endpoint) -> grpc.aio.Channel:
        channel = options.aio_channel(endpoint.address)
        endpoint.transport = EndpointTransport(channel)
        return channel

    return connect


async def _disconnect(endpoint: Endpoint, control: grpc.aio.Channel) -> None:
    await control.close()
    # Let the grpc channel go now: grpc.aio shuts its machinery down with the last
    # channel, and a channel kept alive past its event loop ties grpc to that loop.
    endpoint.transport = None


def _call_soon(function: Callable[[], object]) -> None:
    """Run ``function`` soon on the running loop (the channel's), else at once."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        function()
        return
    loop.call_soon(function)


#: Shutdowns of collected channels, referenced until they finish.
_collecting: set[asyncio.Future[None]] = set()


def _closing(supervisor: Supervisor) -> None:
    """Close ``supervisor`` in a task on the running loop, referenced until it ends."""
    task = asyncio.ensure_future(supervisor.aclose())
    _collecting.add(task)
    task.add_done_callback(_collecting.discard)


def _collected(description: str, loop: asyncio.AbstractEventLoop, supervisor: Supervisor) -> None:
    """A channel was garbage-collected unclosed: warn, and stop its background anyway."""
    warnings.warn(f"unclosed {description}", ResourceWarning, stacklevel=1)
    if loop.is_closed():
        return  # its tasks died with the loop

    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
        loop.call_soon_threadsafe(_closing, supervisor)


class _AioMethodCall(MethodCall):
    """A multicallable of the asyncio channel: the hot path, else a task running the chain."""

    def _details(
        self,
        timeout: float | None,
        metadata: Metadata,
        credentials: grpc.CallCredentials | None,
        wait_for_ready: bool | None,
        compression: grpc.Compression | None,
    ) -> Any:
        if metadata:  # refused when the call is made: grpc.aio's refusal leaves it running
            check_metadata(metadata)
        return super()._details(timeout, metadata, credentials, wait_for_ready, compression)

    def _serialize(self, request: Any) -> Any:
        try:
            return super()._serialize(request)
        except LocalRpcError as error:  # an oversized request: grpc.aio's own error type
            raise rpc_error(error.code(), error.details()) from None

    def __init__(
        self,
        channel: ResilientChannel,
        method: str,
        serializer: Serializer,
        deserializer: Deserializer,
        hook: str,
        start: Start,
    ) -> None:
        super().__init__(method, serializer, deserializer, channel.config.method_config(method))
        self._channel = channel
        self._start = start
        self._clock = channel._router.clock
        self._direct = channel._direct
        self._continuation = _continuation(start)
        self._invoke = channel._chain(hook, self._continuation, method)
        #: A traced call's hot path: its span starts here, its attempt's in send_now; when
        #: it has to wait it takes the chain below the tracing step.
        self._tracer = channel._tracing
        self._untraced = channel._chain(hook, self._continuation, method, traced=False)
        policy = channel._retry.policy(method)
        #: A retry or hedging policy puts the retry step in front: the chain, not send_now.
        self._retried = policy.retry is not None or policy.hedging is not None

    def _begin(
        self,
        request: Any,
        timeout: float | None,
        metadata: Metadata,
        credentials: grpc.CallCredentials | None,
        wait_for_ready: bool | None,
        compression: grpc.Compression | None,
        chain_request: Any = None,
    ) -> tuple[Any, asyncio.Future[Any] | None, float | None]:
        """Start the call: (endpoint call, None, None) on the hot path, else (None, task, deadline).

        ``chain_request`` replaces ``request`` for the chain when they differ (the pipe of
        ``write()`` requests, which the hot path does not need). The deadline is on the
        router's clock; when the balancing step is the whole chain it waits for an
        endpoint until that very deadline.
        """
        channel = self._channel
        if not channel._started:
            channel._start()
        details = self._details(timeout, metadata, credentials, wait_for_ready, compression)
        direct = None if self._retried else self._direct
        if chain_request is None:
            chain_request = request
        if direct is None:
            return None, *self._by_chain(self._invoke(details, chain_request), details)
        tracer = self._tracer
        trace = None
        if tracer is not None:
            trace, details = tracer.begin(details)
        try:
            call = direct.send_now(
                details, request, self._start, None if trace is None else details.attempt
            )
        except BaseException as error:  # the send refused: the call span ends with it
            if trace is not None:
                end_raised(trace, error)
            if isinstance(error, grpc.aio.AioRpcError):  # CANCELLED: the endpoint is closing
                return None, _failed(error), None
            raise
        if call is not None:
            return (call if trace is None else started(trace, call)), None, None
        timeout = details.timeout
        deadline = None if timeout is None else self._clock() + timeout
        chain_ = direct.send_later(self._continuation, details, chain_request, deadline)
        if trace is not None:
            chain_ = follow(trace, chain_)
        return None, asyncio.ensure_future(chain_), deadline

    def _by_chain(
        self, chain_: Awaitable[Any], details: Any, trace: CallTrace | None = None
    ) -> tuple[asyncio.Future[Any], float | None]:
        """The call the chain starts (``chain_``, awaited in a task; its span ended as
        ``trace``'s when traced here), and its deadline."""
        timeout = details.timeout
        deadline = None if timeout is None else self._clock() + timeout
        if trace is not None:
            chain_ = follow(trace, chain_)
        return asyncio.ensure_future(chain_), deadline


class _UnaryUnary(_AioMethodCall, grpc.aio.UnaryUnaryMultiCallable):
    def __init__(
        self,
        channel: ResilientChannel,
        method: str,
        serializer: Serializer,
        deserializer: Deserializer,
        hook: str,
        start: Start,
    ) -> None:
        super().__init__(channel, method, serializer, deserializer, hook, start)
        retry = channel._retry.policy(method).retry
        # A retried method's hot path: the first attempt as any call's; the retry step
        # (a task, tenacity) joins only if it fails, continuing below itself in the chain.
        self._retrier = None if retry is None else channel._retry
        self._per_attempt = None if retry is None else retry.per_attempt_recv_timeout
        self._below_retry = channel._chain(hook, self._continuation, traced=False)

    def _first_attempt(
        self,
        direct: BalancingInterceptor,
        retrier: RetryInterceptor,
        details: Any,
        payload: Any,
        trace: CallTrace | None = None,
    ) -> UnaryUnaryCall | None:
        """A retried call sent on the hot path, or None when it has to take the chain."""
        record = AttemptRecord(trace=trace)
        timeout = details.timeout
        per_attempt = self._per_attempt
        binding = per_attempt is not None and (timeout is None or per_attempt < timeout)
        try:
            call = direct.send_now(
                details._replace(timeout=per_attempt) if binding else details,
                payload,
                self._start,
                record,
            )
        except grpc.aio.AioRpcError:
            return None  # the endpoint is closing: the chain decides
        if call is None:
            return None
        deadline = None if timeout is None else self._clock() + timeout
        outcome = watch_first(
            retrier, self._below_retry, details, payload, call, record, deadline, binding
        )
        if trace is not None:
            end_when_settled(trace, outcome)
        return UnaryUnaryCall(self._deserializer, None, outcome, deadline, self._clock)

    def __call__(
        self,
        request: Any,
        *,
        timeout: float | None = None,
        metadata: Metadata = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> UnaryUnaryCall:
        retrier = self._retrier
        direct = self._direct
        if retrier is not None and direct is not None:
            channel = self._channel
            if not channel._started:
                channel._start()
            details = self._details(timeout, metadata, credentials, wait_for_ready, compression)
            payload = self._serialize(request)
            if self._tracer is not None:
                trace, traced = self._tracer.begin(details)
                try:
                    retried = self._first_attempt(direct, retrier, traced, payload, trace)
                except BaseException as error:  # the send refused: the call span ends with it
                    if trace is not None:
                        end_raised(trace, error)
                    raise
                if retried is not None:
                    return retried
                chained, deadline = self._by_chain(self._untraced(traced, payload), traced, trace)
                return UnaryUnaryCall(self._deserializer, None, chained, deadline, self._clock)
            retried = self._first_attempt(direct, retrier, details, payload)
            if retried is not None:
                return retried
            call, task, deadline = self._begin(
                payload, timeout, metadata, credentials, wait_for_ready, compression
            )
            return UnaryUnaryCall(self._deserializer, call, task, deadline, self._clock)
        call, task, deadline = self._begin(
            self._serialize(request), timeout, metadata, credentials, wait_for_ready, compression
        )
        return UnaryUnaryCall(self._deserializer, call, task, deadline, self._clock)


class _UnaryStream(_AioMethodCall, grpc.aio.UnaryStreamMultiCallable):
    def __call__(
        self,
        request: Any,
        *,
        timeout: float | None = None,
        metadata: Metadata = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> UnaryStreamCall:
        call, task, deadline = self._begin(
            self._serialize(request), timeout, metadata, credentials, wait_for_ready, compression
        )
        return UnaryStreamCall(self._deserializer, call, task, deadline, self._clock)


class _StreamingRequests(_AioMethodCall):
    def _begin_stream(
        self,
        request_iterator: Any,
        timeout: float | None,
        metadata: Metadata,
        credentials: grpc.CallCredentials | None,
        wait_for_ready: bool | None,
        compression: grpc.Compression | None,
    ) -> tuple[Any, asyncio.Future[Any] | None, float | None, RequestPipe | None]:
        """Start a request-streaming call: :meth:`_begin`'s result and the pipe if any.

        Without a request iterator the caller writes with ``write()``: on the hot path
        straight to the endpoint call, otherwise into a pipe the chain reads from.
        """
        requests = serialize_requests(request_iterator, self._serializer)
        pipe = RequestPipe() if request_iterator is None else None
        call, task, deadline = self._begin(
            requests, timeout, metadata, credentials, wait_for_ready, compression, pipe
        )
        return call, task, deadline, None if call is not None else pipe


class _StreamUnary(_StreamingRequests, grpc.aio.StreamUnaryMultiCallable):
    def __call__(
        self,
        request_iterator: Any = None,
        timeout: float | None = None,
        metadata: Metadata = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> StreamUnaryCall:
        call, task, deadline, pipe = self._begin_stream(
            request_iterator, timeout, metadata, credentials, wait_for_ready, compression
        )
        return StreamUnaryCall(
            self._deserializer, call, task, deadline, self._clock, self._serializer, pipe
        )


class _StreamStream(_StreamingRequests, grpc.aio.StreamStreamMultiCallable):
    def __call__(
        self,
        request_iterator: Any = None,
        timeout: float | None = None,
        metadata: Metadata = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> StreamStreamCall:
        call, task, deadline, pipe = self._begin_stream(
            request_iterator, timeout, metadata, credentials, wait_for_ready, compression
        )
        return StreamStreamCall(
            self._deserializer, call, task, deadline, self._clock, self._serializer, pipe
        )


class ResilientChannel(grpc.aio.Channel):
    """A ``grpc.aio.Channel`` that spreads every call over many backends.

    >>> async with ResilientChannel(["127.0.0.1:50051", "127.0.0.1:50052"]) as channel:
    ...     reply = await EchoStub(channel).Echo(EchoRequest(message="hi"), timeout=1.0)
    ... # doctest: +SKIP

    Arguments and validation are those of :class:`resilientrpc.ResilientChannel`: a bad
    value raises :class:`resilientrpc.ConfigError` naming the field, from the
    constructor, before anything starts. Failed calls raise ``grpc.aio.AioRpcError``.
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
        self._balancer = core.balancer
        self._router = AsyncRouter(self._balancer, clock=clock)
        balancing = BalancingInterceptor(
            self._router, with_load=core.uses_load_reports, clock=clock
        )
        self._interceptors: list[Any] = [balancing]
        # Per-method retries and hedging (methodConfig), above the balancing step.
        self._event_listeners = EventListeners(_call_soon)
        self._retry_listeners = RetryListeners(_call_soon)
        self._retry = RetryInterceptor(
            core.config,
            clock=clock,
            buffer_limit=core.options.retry_buffer_limit,
            events=self._retry_listeners.on_event,
        )
        # Tracing and metrics, outermost, only when a tracer or a meter provider is
        # given: neither, no step at all.
        self._tracing = channel_tracer(
            TracingInterceptor,
            tracer_provider,
            meter_provider,
            strategy=self._balancer.strategy.name,
            target=targets,
            statuses=self._balancer.statuses,
        )
        # Nothing in the background refers back to the channel, so an unclosed channel
        # that nobody (no stub) holds any more is collected, and its finalizer stops it.
        self._supervisor = Supervisor(
            self._balancer,
            target,
            connect=_connector(self._options),
            disconnect=_disconnect,
            health_check=core.config.health_check,
            outliers=core.config.effective_outlier_detection,
        )
        self._balancer.add_event_listener(self._event_listeners.on_event)
        if self._tracing is not None:
            self._event_listeners.add(self._tracing.endpoint_listener())
        self._started = False
        self._closed = False
        self._finalizer: weakref.finalize[Any, Any] | None = None
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # started by the first use on a loop
        self._start()

    def _start(self) -> None:
        """Start the background on the running loop (raises RuntimeError outside one)."""
        asyncio.get_running_loop()
        if self._started or self._closed:
            return
        self._started = True
        try:
            self._supervisor.start()
        except BaseException:  # leave nothing half-started: close what did start
            self._closed = True
            _closing(self._supervisor)
            raise
        self._finalizer = weakref.finalize(
            self, _collected, repr(self), asyncio.get_running_loop(), self._supervisor
        )

    # -- the interceptor chain -----------------------------------------------------------
    @property
    def _direct(self) -> BalancingInterceptor | None:
        """The balancing step, when only the channel's own retry and tracing steps may
        stand in front of it (the hot path does their work itself)."""
        if len(self._interceptors) == 1:
            direct: BalancingInterceptor = self._interceptors[0]
            return direct
        return None

    def _chain(
        self, hook: str, terminal: Invoke, method: str | None = None, *, traced: bool = True
    ) -> Invoke:
        """The chain of ``hook`` ending in ``terminal``; with the retry step on top when
        ``method`` has a retry or hedging policy, and the tracing step above everything
        when the channel has a tracer provider (unless not ``traced``: the hot path
        traces the call itself)."""
        steps = self._interceptors
        if method is not None:
            policy = self._retry.policy(method)
            if policy.retry is not None or policy.hedging is not None:
                steps = [self._retry, *steps]
        if self._tracing is not None and traced:
            steps = [self._tracing, *steps]
        return chain(steps, hook, terminal)

    # -- grpc.aio.Channel ----------------------------------------------------------------
    def unary_unary(
        self,
        method: str,
        request_serializer: Serializer = None,
        response_deserializer: Deserializer = None,
        _registered_method: bool | None = False,
    ) -> grpc.aio.UnaryUnaryMultiCallable:
        register_method(self._tracing, method, _registered_method)
        return _UnaryUnary(
            self,
            method,
            request_serializer,
            response_deserializer,
            "intercept_unary_unary",
            _start_unary_unary,
        )

    def unary_stream(
        self,
        method: str,
        request_serializer: Serializer = None,
        response_deserializer: Deserializer = None,
        _registered_method: bool | None = False,
    ) -> grpc.aio.UnaryStreamMultiCallable:
        register_method(self._tracing, method, _registered_method)
        return _UnaryStream(
            self,
            method,
            request_serializer,
            response_deserializer,
            "intercept_unary_stream",
            _start_unary_stream,
        )

    def stream_unary(
        self,
        method: str,
        request_serializer: Serializer = None,
        response_deserializer: Deserializer = None,
        _registered_method: bool | None = False,
    ) -> grpc.aio.StreamUnaryMultiCallable:
        register_method(self._tracing, method, _registered_method)
        return _StreamUnary(
            self,
            method,
            request_serializer,
            response_deserializer,
            "intercept_stream_unary",
            _start_stream_unary,
        )

    def stream_stream(
        self,
        method: str,
        request_serializer: Serializer = None,
        response_deserializer: Deserializer = None,
        _registered_method: bool | None = False,
    ) -> grpc.aio.StreamStreamMultiCallable:
        register_method(self._tracing, method, _registered_method)
        return _StreamStream(
            self,
            method,
            request_serializer,
            response_deserializer,
            "intercept_stream_stream",
            _start_stream_stream,
        )

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        """The channel's aggregate state: READY while any endpoint can take traffic.

        Endpoints always try to connect, so ``try_to_connect`` changes nothing; called on
        a loop, this starts the channel's background if nothing has yet.
        """
        if not self._started:
            with contextlib.suppress(RuntimeError):  # no running loop: the state as it stands
                self._start()
        return self._balancer.picker.state

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        """Return once the channel's state differs from ``last_observed_state``."""
        self._start()
        while self._balancer.picker.state is last_observed_state:
            await self._router.changed()

    async def channel_ready(self) -> None:
        """Wait until at least one endpoint can take traffic.

        Raises ``grpc.aio.UsageError`` if the channel is (or gets) closed meanwhile.
        """
        state = self.get_state(try_to_connect=True)
        while state is not _READY:
            if state is _SHUTDOWN:
                raise grpc.aio.UsageError("Channel is closed.")
            await self.wait_for_state_change(state)
            state = self.get_state(try_to_connect=True)

    def add_event_listener(self, callback: EventCallback) -> None:
        """Call ``callback(event)`` with every endpoint transition, as it happens.

        The events of :meth:`resilientrpc.ResilientChannel.add_event_listener`. Callbacks
        run in order on the channel's event loop, each from its own ``call_soon`` (never
        inside the balancer), so one may call the channel or schedule ``close()``; one
        that raises is logged and the others still run.
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

    async def close(self, grace: float | None = None) -> None:
        """Stop all background work and close every connection; idempotent.

        New calls and calls still waiting for an endpoint end with CANCELLED ("channel
        closed") at once; calls in flight get ``grace`` seconds to finish (none by
        default), then are cancelled by their endpoint channels closing.
        """
        if self._closed:
            return
        self._closed = True
        if self._finalizer is not None:
            self._finalizer.detach()
        self._retry.close()  # calls waiting to retry or hedge end CANCELLED "channel closed"
        self._balancer.shutdown()
        if grace:
            await asyncio.gather(
                *(
                    endpoint.transport.channel.close(grace)
                    for endpoint in self._balancer.endpoints
                    if endpoint.transport is not None
                )
            )
        self._interceptors[-1].cancel_in_flight()
        await self._supervisor.aclose()

    async def __aenter__(self) -> ResilientChannel:
        self._start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        addresses = [e.address for e in self._balancer.endpoints]
        return f"<aio.ResilientChannel {self._balancer.strategy.name} {addresses}>"
