"""The benchmark: resilientrpc's channels against plain grpcio, as ratios from one run.

``resilientrpc bench`` (also ``python -m resilientrpc.bench`` and ``make bench``) runs,
on ``127.0.0.1`` only and with every load loop bounded in calls and in time:

1. per-call latency of sequential unary calls: ``ResilientChannel`` (round_robin over 1
   and over 3 backends) against a plain ``grpc.insecure_channel`` (goal <= 1.15x);
2. throughput with 8 threads over 3 backends against grpcio's native round_robin
   (goal >= 0.9x);
3. one backend 20 ms slow: each strategy's p99 and slow-backend share against native
   round_robin's p99 (goal: peak_ewma <= 0.25x);
4. the cost of ``picker.pick()`` + ``done()`` at 10, 100 and 1,000 endpoints, without
   network (goal: flat within 1.2x);
5. the asyncio twin ``resilientrpc.aio.ResilientChannel`` against ``grpc.aio``: latency
   (goal <= 1.2x), throughput with 64 concurrent calls on one loop, slow backend.

Only when asked for (``--scenario``): ``faults`` (fault detection against grpcio's native
round_robin with health checking) and ``retries`` (issue 9: grpcio's native retryPolicy
next to both twins with the same service config; :mod:`.retries`).

``resilientrpc bench --help`` lists the options with their defaults, each scenario's goal
and the budgets of a full and a ``--quick`` run.

The machine is shared and noisy, so no absolute time is a result: variants are measured
side by side, in interleaved rounds, and compared. The pieces: :mod:`.results` (rows,
goals, statistics), :mod:`.fleet` (backends), :mod:`.drivers` and :mod:`.aio_driver`
(the I/O of each twin), :mod:`.network` (scenarios 1-3 and 5, written once for both
twins), :mod:`.pick_cost` (scenario 4), :mod:`.report` (tables), :mod:`.runner` (the
command line).

>>> from resilientrpc.bench import main
>>> main(["--quick"])  # doctest: +SKIP
"""

from __future__ import annotations

from resilientrpc.bench.pick_cost import PickCost, measure_pick_cost, pick_cost_rows
from resilientrpc.bench.results import Goal, Row, Summary, summarize
from resilientrpc.bench.runner import build_parser, main

__all__ = [
    "Goal",
    "PickCost",
    "Row",
    "Summary",
    "build_parser",
    "main",
    "measure_pick_cost",
    "pick_cost_rows",
    "summarize",
]
