"""Per-method retries, hedging and no-retry writes, from a service config file.

    make setup                                              # creates .venv, once
    .venv/bin/python examples/per_method_retries.py         # starts three local backends
    .venv/bin/python examples/per_method_retries.py --calls 500

The channel is built from ``examples/retry_service_config.json``, given by its path. Its
``methodConfig`` gives each method of the Echo service the policy its kind of call needs:

* ``ServerStream``, an idempotent read: ``retryPolicy`` with up to 4 attempts on
  UNAVAILABLE, each attempt cut off after 0.5 s (``perAttemptRecvTimeout``), so a hung
  backend costs one attempt, not the whole 2 s deadline. DEADLINE_EXCEEDED is not in the
  list: it means the call's own deadline has passed, and no retry fits after that. A
  stream is retried only until its first message arrives.
* ``ClientStream``, a write that must not happen twice: a timeout and no retry policy.
* ``Echo``, a latency-sensitive lookup: ``hedgingPolicy``, a second copy after the 95th
  percentile of its recent latency (50 ms until there are enough samples), a third after
  as long again, the first answer wins. Hedging is for unary calls and ``Echo`` is the
  Echo service's only unary method, so the lookup is the hedged one here.

``retryThrottling`` (gRPC's token bucket) and ``retryBudget`` (at most 20 % more attempts
than calls, plus 10 a second) stop retries and hedges from piling onto an outage.

One of the three local backends, ``flaky``, fails 30 % of its calls with UNAVAILABLE. The
program sends ``--calls`` calls of each kind and prints how many succeeded, then how many
calls each backend received: more received than sent means retries or hedges went out.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc

from resilientrpc import ResilientChannel
from resilientrpc.config import MethodConfig
from resilientrpc.testing import echo_pb2, echo_pb2_grpc, start_backends

CONFIG_PATH = Path(__file__).with_name("retry_service_config.json")
SERVICE = "resilientrpc.echo.v1.Echo"
FLAKY_ERROR_RATE = 0.3


def describe(method_config: MethodConfig | None) -> str:
    """The policy of one method, in a few words."""
    if method_config is None:
        return "no method config"
    if method_config.retry_policy is not None:
        policy = method_config.retry_policy
        codes = ", ".join(sorted(code.name for code in policy.retryable_status_codes))
        return f"retryPolicy: {policy.max_attempts} attempts on {codes}"
    if method_config.hedging_policy is not None:
        return f"hedgingPolicy: {method_config.hedging_policy.max_attempts} attempts"
    return f"no retries, timeout {method_config.timeout} s"


def run_calls(count: int, call: Callable[[int], object]) -> Counter[str]:
    """Make ``count`` calls; how many ended with each status code name."""
    outcomes: Counter[str] = Counter()
    for index in range(count):
        try:
            call(index)
        except grpc.RpcError as error:
            outcomes[error.code().name] += 1
        else:
            outcomes["OK"] += 1
    return outcomes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--calls",
        type=int,
        default=100,
        metavar="N",
        help="calls of each kind, at most 10000 (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.calls <= 10_000:
        parser.error(f"argument --calls: expected 1 to 10000, got {args.calls}")
    with start_backends(3, names=["alpha", "beta", "flaky"]) as backends:
        backends[2].configure(error_rate=FLAKY_ERROR_RATE)
        with ResilientChannel(backends.addresses, config=CONFIG_PATH) as channel:
            grpc.channel_ready_future(channel).result(timeout=5)
            stub = echo_pb2_grpc.EchoStub(channel)

            def read(index: int) -> object:
                request = echo_pb2.EchoRequest(message=f"read {index}", count=2)
                return list(stub.ServerStream(request))

            def write(index: int) -> object:
                parts = (echo_pb2.EchoRequest(message=f"write {index}.{n}") for n in range(2))
                return stub.ClientStream(parts)

            def lookup(index: int) -> object:
                return stub.Echo(echo_pb2.EchoRequest(message=f"lookup {index}"))

            kinds = [("ServerStream", "read", read), ("ClientStream", "write", write)]
            kinds.append(("Echo", "lookup", lookup))
            for method, kind, call in kinds:
                outcomes = run_calls(args.calls, call)
                failed = ", ".join(f"{code} {n}" for code, n in outcomes.items() if code != "OK")
                policy = describe(channel.config.method_config(f"/{SERVICE}/{method}"))
                print(
                    f"{kind:<7} {method:<13} {policy:<40} "
                    f"{outcomes['OK']}/{args.calls} succeeded{'; ' + failed if failed else ''}"
                )
        received = backends.calls()
        sent = 3 * args.calls
        print(
            "calls received: "
            + ", ".join(f"{name} {count}" for name, count in received.items())
            + f" ({sum(received.values())} for {sent} calls sent; flaky fails "
            f"{FLAKY_ERROR_RATE:.0%} with UNAVAILABLE)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
