"""Endpoint connection options: the user's win, documented defaults otherwise, bad values
refused at construction by both twins."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import resilientrpc.aio
from resilientrpc import ConfigError, ResilientChannel
from resilientrpc.options import (
    CONNECT_TIMEOUT_OPTION,
    DEFAULT_CONNECT_TIMEOUT_MS,
    DEFAULT_OPTIONS,
    ChannelOptions,
)
from resilientrpc.supervisor import Supervisor
from tests.waiting import eventually


def test_documented_defaults() -> None:
    options = ChannelOptions.build(None, None)
    assert options.options == DEFAULT_OPTIONS
    defaults = dict(options.options)
    assert defaults["grpc.initial_reconnect_backoff_ms"] == 250
    assert defaults["grpc.max_reconnect_backoff_ms"] == 2_000
    # The connect timeout stays gRPC's 20 s: a short one never reaches slow backends.
    assert defaults[CONNECT_TIMEOUT_OPTION] == DEFAULT_CONNECT_TIMEOUT_MS == 20_000


def test_user_options_are_kept_and_win() -> None:
    mine = [("grpc.max_reconnect_backoff_ms", 30_000), ("grpc.keepalive_time_ms", 10_000)]
    options = dict(ChannelOptions.build(mine, None).options)
    assert options["grpc.max_reconnect_backoff_ms"] == 30_000
    assert options["grpc.keepalive_time_ms"] == 10_000
    assert options["grpc.initial_reconnect_backoff_ms"] == 250


BAD_VALUES: list[Any] = [object(), None, 1.5, 2**40, [1]]


@pytest.mark.parametrize("value", BAD_VALUES, ids=repr)
def test_a_bad_option_value_is_refused_naming_it(value: Any) -> None:
    options = [("grpc.keepalive_time_ms", 1000), ("grpc.max_receive_message_length", value)]
    with pytest.raises(ConfigError) as caught:
        ChannelOptions.build(options, None)
    assert caught.value.path == "options[1]"
    assert "grpc.max_receive_message_length" in str(caught.value)


@pytest.mark.parametrize("value", [1, True, "text", b"bytes"], ids=repr)
def test_values_grpc_takes_are_accepted(value: Any) -> None:
    ChannelOptions.build([("grpc.some_option", value)], None)


def test_both_twins_refuse_a_bad_option_before_anything_starts() -> None:
    threads = set(threading.enumerate())
    bad = [("grpc.max_receive_message_length", object())]
    with pytest.raises(ConfigError, match=r"options\[0\]"):
        ResilientChannel(["127.0.0.1:1"], options=bad)
    with pytest.raises(ConfigError, match=r"options\[0\]"):  # outside a loop, too
        resilientrpc.aio.ResilientChannel(["127.0.0.1:1"], options=bad)
    assert set(threading.enumerate()) <= threads


def _start_then_fail(real: Any) -> Any:
    def start(self: Any) -> None:
        real(self)  # everything starts: connections open, watch tasks run
        raise RuntimeError("start failed half-way")

    return start


def test_a_failed_sync_start_leaves_nothing_running(
    monkeypatch: pytest.MonkeyPatch, backend: Any
) -> None:
    server = backend("b")
    before = set(threading.enumerate())
    monkeypatch.setattr(Supervisor, "start", _start_then_fail(Supervisor.start))
    with pytest.raises(RuntimeError, match="half-way"):
        ResilientChannel([server.address])
    assert eventually(lambda: set(threading.enumerate()) <= before), set(threading.enumerate())


def test_a_failed_aio_start_leaves_nothing_running(
    monkeypatch: pytest.MonkeyPatch, backend: Any
) -> None:
    server = backend("b")
    monkeypatch.setattr(Supervisor, "start", _start_then_fail(Supervisor.start))

    async def main() -> set[asyncio.Task[Any]]:
        with pytest.raises(RuntimeError, match="half-way"):
            resilientrpc.aio.ResilientChannel([server.address])
        for _ in range(100):  # the clean-up task runs on this loop
            others = asyncio.all_tasks() - {asyncio.current_task()}
            if not others:
                break
            await asyncio.sleep(0.01)
        return asyncio.all_tasks() - {asyncio.current_task()}

    assert asyncio.run(main()) == set()
