"""resilientrpc for ``grpc.aio``: the asyncio twin of :class:`resilientrpc.ResilientChannel`.

>>> async with resilientrpc.aio.ResilientChannel(["127.0.0.1:50051"]) as channel:
...     reply = await EchoStub(channel).Echo(EchoRequest(message="hi"), timeout=1.0)
... # doctest: +SKIP

The same engine (balancer, strategies, supervisor, configuration) drives both channels;
this package holds only the asyncio driver: the channel, its router and its call objects.
"""

from __future__ import annotations

from resilientrpc.aio.channel import ResilientChannel
from resilientrpc.aio.router import AsyncRouter

__all__ = ["AsyncRouter", "ResilientChannel"]
