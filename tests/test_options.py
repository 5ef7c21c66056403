"""Endpoint connection options: the user's win, short reconnect backoff otherwise."""

from __future__ import annotations

from resilientrpc.options import RECONNECT_OPTIONS, ChannelOptions


def test_short_reconnect_backoff_by_default() -> None:
    options = ChannelOptions.build(None, None)
    assert options.options == RECONNECT_OPTIONS


def test_user_options_are_kept_and_win() -> None:
    mine = [("grpc.max_reconnect_backoff_ms", 30_000), ("grpc.keepalive_time_ms", 10_000)]
    options = dict(ChannelOptions.build(mine, None).options)
    assert options["grpc.max_reconnect_backoff_ms"] == 30_000
    assert options["grpc.keepalive_time_ms"] == 10_000
    assert options["grpc.initial_reconnect_backoff_ms"] == 250
