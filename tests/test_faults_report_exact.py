"""Exact figures of the fault report (``resilientrpc.faults_report``), no network.

Each test pins one rule of the parsers or of the analysis with values worked out by hand:
the spans each format gives field by field (defaults of missing keys, hex and base64 ids,
Jaeger tags and logs), the errors and where they point, the nearest-rank percentile, the
binomial tail against a direct sum, the best peer's choice, the slow limit at its edges,
endpoints known only from events, and the text of the report. docs/mutation.md lists the
mutants these tests were written to kill.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import math
from typing import Any

import pytest

from resilientrpc.errors import ConfigError
from resilientrpc.faults_report import (
    AttributeValue,
    EndpointFigures,
    Event,
    Span,
    build_report,
    format_report,
    parse_jaeger,
    parse_otlp,
    parse_spans,
)

T0 = 1_767_225_600_000_000_000
MS = 1_000_000
OK, CANCELLED, DEADLINE_EXCEEDED, UNAVAILABLE = 0, 1, 4, 14
METHOD = "resilientrpc.echo.v1.Echo/Echo"
TRACE_HEX = "0af7651916cd43dd8448eb211c80319c"
SPAN_HEX = "b7ad6b7169203331"
#: A span with every key missing.
EMPTY = Span(
    trace_id="", span_id="", parent_id="", name="", start_ns=0, end_ns=0, error=False, attributes={}
)


# --- parsing ---------------------------------------------------------------------------


def _error(text: str | bytes) -> tuple[str, str]:
    with pytest.raises(ConfigError) as caught:
        parse_spans(text)
    return caught.value.path, caught.value.message


def _otlp(*spans: dict[str, Any]) -> dict[str, Any]:
    return {"resourceSpans": [{"scopeSpans": [{"spans": list(spans)}]}]}


def test_an_otlp_span_is_read_field_by_field() -> None:
    raw = {
        "traceId": TRACE_HEX.upper(),  # hex in either case becomes lowercase
        "spanId": base64.b64encode(bytes.fromhex(SPAN_HEX)).decode(),  # protobuf's base64
        "parentSpanId": "AAAA",  # base64 of 3 bytes: not an id of 8, kept as written
        "name": "n",
        "startTimeUnixNano": str(T0),
        "endTimeUnixNano": str(T0 + 5),
        "status": {"code": 2},
        "attributes": [
            {"key": "s", "value": {"stringValue": "x"}},
            {"key": "b", "value": {"boolValue": True}},
            {"key": "i", "value": {"intValue": "7"}},
            {"key": "d", "value": {"doubleValue": 1.5}},
            {"key": "kv", "value": {"kvlistValue": {"values": [{"value": {}, "key": "k"}]}}},
            {"key": "none"},
        ],
        "events": [
            {
                "name": "e",
                "timeUnixNano": str(T0 + 1),
                "attributes": [{"key": "d", "value": {"doubleValue": 2.0}}],
            },
            {},
        ],
    }
    (span,) = parse_spans(json.dumps(_otlp(raw)))
    assert span == Span(
        trace_id=TRACE_HEX,
        span_id=SPAN_HEX,
        parent_id="AAAA",
        name="n",
        start_ns=T0,
        end_ns=T0 + 5,
        error=True,
        attributes={
            "s": "x",
            "b": True,
            "i": 7,
            "d": 1.5,
            "kv": '{"kvlistValue": {"values": [{"key": "k", "value": {}}]}}',
            "none": "{}",
        },
        events=(
            Event(name="e", time_ns=T0 + 1, attributes={"d": 2.0}),
            Event(name="", time_ns=0, attributes={}),
        ),
    )
    assert isinstance(span.attributes["d"], float)


def test_an_empty_otlp_span_takes_the_defaults() -> None:
    document: dict[str, Any] = {"resourceSpans": [{}, {"scopeSpans": [{}, {"spans": [{}]}]}]}
    assert parse_spans(json.dumps(document)) == [EMPTY]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        ({}, False),
        ({"code": 0}, False),
        ({"code": 1}, False),
        ({"code": 2}, True),
        ({"code": "STATUS_CODE_OK"}, False),
        ({"code": "STATUS_CODE_ERROR"}, True),
    ],
)
def test_only_an_error_status_is_an_error(status: dict[str, Any], error: bool) -> None:
    (span,) = parse_spans(json.dumps(_otlp({"status": status})))
    assert span.error is error


@pytest.mark.parametrize(
    ("written", "read"),
    [
        (SPAN_HEX.upper(), SPAN_HEX),
        ("ABC", "ABC"),  # hex digits, not an id's length, not base64: kept
        (TRACE_HEX, TRACE_HEX),  # hex of 16 bytes for a span id: base64 of 24, kept
        ("AAAAAAAAAAA=", "0000000000000000"),  # base64 of 8 bytes
        ("AAAA-AAAAAAA=", "AAAA-AAAAAAA="),  # not strict base64: kept
        ("AAAAAAAAAAAAAAAAAAAAAA==", "AAAAAAAAAAAAAAAAAAAAAA=="),  # base64 of 16 bytes
    ],
)
def test_otlp_span_ids_become_hex_only_when_they_are_ids(written: str, read: str) -> None:
    (span,) = parse_spans(json.dumps(_otlp({"spanId": written})))
    assert span.span_id == read


def test_otlp_trace_ids_decode_sixteen_bytes_of_base64() -> None:
    written = base64.b64encode(bytes.fromhex(TRACE_HEX)).decode()
    (span,) = parse_spans(json.dumps(_otlp({"traceId": written})))
    assert span.trace_id == TRACE_HEX


def _jaeger_span(**extra: Any) -> dict[str, Any]:
    return {"spanID": "s1", **extra}


def test_a_jaeger_span_is_read_field_by_field() -> None:
    raw = {
        "traceID": "t1",
        "spanID": "s2",
        "operationName": "op",
        "references": [
            {"refType": "FOLLOWS_FROM", "spanID": "f"},
            {"refType": "CHILD_OF", "spanID": "p"},
            {"refType": "CHILD_OF", "spanID": "q"},
        ],
        "startTime": 1_000,
        "duration": 7,
        "tags": [
            {"key": "i", "type": "int64", "value": 3},
            {"key": "f", "type": "float64", "value": 2},
            {"key": "b1", "type": "bool", "value": True},
            {"key": "b2", "type": "bool", "value": "true"},
            {"key": "b3", "type": "bool", "value": "True"},
            {"key": "s", "type": "string", "value": 5},
            {"key": "untyped", "value": 6},
            {"key": "other", "type": "binary", "value": "AA=="},
        ],
        "logs": [
            {
                "timestamp": 1_002,
                "fields": [{"key": "event", "value": "e"}, {"key": "x", "value": "y"}],
            },
            {},
        ],
    }
    (span,) = parse_jaeger({"data": [{"traceID": "ignored", "spans": [raw]}]})
    assert span == Span(
        trace_id="t1",
        span_id="s2",
        parent_id="p",
        name="op",
        start_ns=1_000_000,
        end_ns=1_007_000,
        error=False,
        attributes={
            "i": 3,
            "f": 2.0,
            "b1": True,
            "b2": True,
            "b3": False,
            "s": "5",
            "untyped": "6",
            "other": "AA==",
        },
        events=(
            Event(name="e", time_ns=1_002_000, attributes={"x": "y"}),
            Event(name="", time_ns=0, attributes={}),
        ),
    )
    assert isinstance(span.attributes["f"], float) and isinstance(span.start_ns, int)


def test_an_empty_jaeger_span_takes_the_defaults_and_the_trace_id() -> None:
    document: dict[str, Any] = {
        "data": [{"traceID": "t"}, {"traceID": "t", "spans": [{}, {"references": [{}]}]}]
    }
    empty = dataclasses.replace(EMPTY, trace_id="t")
    assert parse_jaeger(document) == [empty, empty]
    assert parse_jaeger({"data": [{"spans": [{}]}]})[0].trace_id == ""
    assert parse_jaeger({"data": None}) == []
    (child,) = parse_jaeger({"data": [{"spans": [{"references": [{"refType": "CHILD_OF"}]}]}]})
    assert child.parent_id == ""


@pytest.mark.parametrize(
    ("tags", "error"),
    [
        ([], False),
        ([{"key": "otel.status_code", "value": "ERROR"}], True),
        ([{"key": "otel.status_code", "value": "OK"}], False),
        ([{"key": "error", "type": "bool", "value": True}], True),
        ([{"key": "error", "type": "bool", "value": False}], False),
        ([{"key": "error", "value": "true"}], False),  # a string tag, not the bool
    ],
)
def test_a_jaeger_error_is_the_otel_status_or_the_error_tag(
    tags: list[dict[str, Any]], error: bool
) -> None:
    (span,) = parse_jaeger({"data": [{"spans": [_jaeger_span(tags=tags)]}]})
    assert span.error is error


def test_documents_in_a_row_may_mix_the_formats() -> None:
    otlp = json.dumps(_otlp({"spanId": "a"}))
    jaeger = json.dumps({"data": [{"spans": [_jaeger_span()]}]})
    spans = parse_spans(f"{otlp}\n{jaeger}\n{otlp}".encode())
    assert [span.span_id for span in spans] == ["a", "s1", "a"]
    assert parse_spans(b"\xef\xbb\xbf" + otlp.encode())[0].span_id == "a"  # a UTF-8 BOM


def test_parse_otlp_reads_documents_and_names_the_bad_one_by_index() -> None:
    assert [
        span.span_id for span in parse_otlp([_otlp({"spanId": "a"}), _otlp({"spanId": "b"})])
    ] == [
        "a",
        "b",
    ]
    with pytest.raises(ConfigError) as caught:
        parse_otlp([_otlp(), {"data": []}])
    assert (caught.value.path, caught.value.message) == (
        "[1]",
        "expected an OTLP object with 'resourceSpans'",
    )


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        (
            gzip.compress(b"{}"),
            "file",
            "gzip-compressed, not JSON: decompress it or export uncompressed",
        ),
        (
            b"\x28\xb5\x2f\xfd\x00",
            "file",
            "zstd-compressed, not JSON: decompress it or export uncompressed",
        ),
        (
            b"\n\x8f\x01",
            "file",
            "not UTF-8 text (a binary format, such as the collector's `format: proto`?)",
        ),
        ('"resourceSpans"', "[0]", "expected an OTLP object with 'resourceSpans'"),
        (
            '{"resourceSpans": []}\n["resourceSpans"]',
            "line 2",
            "expected an OTLP object with 'resourceSpans'",
        ),
        (
            '\n\n{"resourceSpans": []}\n\n{"resourceSpans": [\n',
            "line 5",
            "not JSON: Expecting value (line 6)",
        ),
        ('{"resourceSpans": []}\n{}\n{"a" 1}\n', "line 3", "not JSON: Expecting ':' delimiter"),
        (
            json.dumps(_otlp({"startTimeUnixNano": "x"})),
            "file",
            "not OTLP or Jaeger JSON (ValueError(\"invalid literal for int() with base 10: 'x'\"))",
        ),
    ],
    ids=["gzip", "zstd", "binary", "string", "list", "truncated", "third-line", "bad-int"],
)
def test_a_bad_file_gets_one_error_naming_where(text: str | bytes, path: str, message: str) -> None:
    assert _error(text) == (path, message)


def test_spaces_alone_are_no_spans() -> None:
    assert parse_spans(" \n\t\r\n") == []


# --- analysis --------------------------------------------------------------------------


class _Spans:
    """Calls of one attempt each (or several), ids counted up."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self._ids = 0

    def _id(self) -> str:
        self._ids += 1
        return f"{self._ids:016x}"

    def call(
        self,
        attempts: list[tuple[str, int, float]],
        code: int | None,
        *,
        hedge_last: bool = False,
        error: bool = False,
    ) -> None:
        """``attempts`` are (host:port, code, milliseconds); a code None is left out."""
        call_id = self._id()
        for number, (endpoint, attempt_code, millis) in enumerate(attempts, start=1):
            host, port = endpoint.rsplit(":", 1)
            attributes: dict[str, AttributeValue] = {
                "server.address": host,
                "server.port": int(port),
                "rpc.grpc.status_code": attempt_code,
                "resilientrpc.hedge": hedge_last and number == len(attempts),
            }
            self.spans.append(
                Span(
                    trace_id="t",
                    span_id=self._id(),
                    parent_id=call_id,
                    name=f"Attempt.{METHOD}",
                    start_ns=T0,
                    end_ns=T0 + round(millis * MS),
                    error=attempt_code != OK,
                    attributes=attributes,
                )
            )
        self.spans.append(
            Span(
                trace_id="t",
                span_id=call_id,
                parent_id="",
                name=METHOD,
                start_ns=T0,
                end_ns=T0,
                error=error,
                attributes={} if code is None else {"rpc.grpc.status_code": code},
            )
        )

    def many(self, endpoint: str, count: int, code: int = OK, millis: float = 1.0) -> None:
        for _ in range(count):
            self.call([(endpoint, code, millis)], code)

    def event_span(self, name: str, attributes: dict[str, AttributeValue], at: int = T0) -> None:
        self.spans.append(
            Span(
                trace_id="e",
                span_id=self._id(),
                parent_id="",
                name=name,
                start_ns=at,
                end_ns=at + 1,
                error=False,
                attributes=attributes,
            )
        )

    def figures(self) -> dict[str, EndpointFigures]:
        return {one.endpoint: one for one in build_report(self.spans).endpoints}


A, B, C = "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"


def test_percentiles_are_nearest_rank() -> None:
    build = _Spans()
    for millis in (4.0, 1.0, 3.0, 2.0):
        build.many(A, 1, millis=millis)
    figures = build.figures()[A]
    assert (figures.p50_ms, figures.p99_ms) == (2.0, 4.0)
    build = _Spans()
    build.many(A, 99, millis=1.0)
    build.many(A, 2, millis=9.0)  # 101 values: the 99th percentile is the 100th, 9 ms
    assert build.figures()[A].p99_ms == 9.0
    build = _Spans()
    build.many(A, 100, millis=1.0)
    build.many(A, 1, millis=9.0)  # the 100th of 101 is still 1 ms
    assert build.figures()[A].p99_ms == 1.0


def test_a_lone_endpoint_has_no_peer_figures() -> None:
    build = _Spans()
    build.many(A, 3, UNAVAILABLE)
    (figures,) = build.figures().values()
    assert (figures.best_peer_failure_rate, figures.best_peer_p99_ms) == (None, None)
    assert (figures.excess_failures, figures.failures_p_value) == (0.0, 1.0)
    assert (figures.excess_slow, figures.slow_p_value, figures.slow_attempts) == (0.0, 1.0, 0)
    assert figures.failure_rate == 1.0


def test_an_endpoint_known_only_from_events_is_no_peer() -> None:
    build = _Spans()
    build.many(A, 20)
    build.many(B, 20, UNAVAILABLE)
    build.event_span("endpoint.ejected", {"server.address": "127.0.0.1", "server.port": 3})
    build.event_span("endpoint.heartbeat_missed", {"server.address": "127.0.0.1"})  # no port
    figures = build.figures()
    assert sorted(figures) == ["127.0.0.1", A, B, C]
    lone = figures[C]
    assert (lone.attempts, lone.failures, lone.failure_rate, lone.ejections) == (0, 0, 0.0, 1)
    assert (lone.p50_ms, lone.p99_ms, lone.best_peer_failure_rate) == (0.0, 0.0, 0.0)
    assert (lone.excess_failures, lone.failures_p_value) == (0.0, 1.0)  # no attempts
    assert (lone.excess_slow, lone.slow_p_value) == (0.0, 1.0)
    assert figures["127.0.0.1"].heartbeat_misses == 1
    assert figures[A].best_peer_failure_rate == 1.0  # B: C has no attempts to compare
    suspects = {one.endpoint: one for one in build_report(build.spans).suspects}
    assert sorted(suspects) == ["127.0.0.1", B, C]
    assert suspects["127.0.0.1"].evidence == "1 heartbeat miss"
    assert suspects[C].evidence == "1 ejection"


def test_the_best_peer_has_the_lowest_failure_rate_not_the_fewest_failures() -> None:
    build = _Spans()
    build.many(A, 9)
    build.many(A, 1, UNAVAILABLE)  # 1 of 10
    build.many(B, 998)
    build.many(B, 2, UNAVAILABLE)  # 2 of 1,000: the best peer of C
    build.many(C, 70)
    build.many(C, 30, UNAVAILABLE)
    figures = build.figures()[C]
    assert figures.best_peer_failure_rate == 0.002
    assert figures.excess_failures == pytest.approx(30 - 100 * 0.002)


def _tail(count: int, trials: int, share: float) -> float:
    return sum(
        math.comb(trials, hits) * share**hits * (1 - share) ** (trials - hits)
        for hits in range(count, trials + 1)
    )


@pytest.mark.parametrize(
    ("here", "peer"),
    [((100, 60), (100, 40)), ((300, 25), (100, 2)), ((50, 30), (450, 150)), ((1, 1), (3, 0))],
)
def test_the_chance_is_the_binomial_tail(here: tuple[int, int], peer: tuple[int, int]) -> None:
    build = _Spans()
    for endpoint, (attempts, failed) in ((A, here), (B, peer)):
        build.many(endpoint, attempts - failed)
        build.many(endpoint, failed, UNAVAILABLE)
    figures = build.figures()[A]
    share = here[0] / (here[0] + peer[0])
    expected = _tail(here[1], here[1] + peer[1], share)
    assert figures.failures_p_value == pytest.approx(expected, rel=1e-9)
    assert figures.excess_failures == pytest.approx(here[1] - here[0] * peer[1] / peer[0])


def test_no_more_failures_than_the_share_is_no_evidence() -> None:
    build = _Spans()
    for endpoint in (A, B):  # one attempt each, one failure each: exactly the share
        build.many(endpoint, 1, UNAVAILABLE)
    figures = build.figures()[A]
    assert (figures.excess_failures, figures.failures_p_value) == (0.0, 1.0)
    build = _Spans()
    build.many(A, 1, UNAVAILABLE)
    build.many(B, 1)
    figures = build.figures()[A]  # one attempt against one: the tail is 1/2
    assert (figures.excess_failures, figures.failures_p_value) == (1.0, 0.5)
    assert build.figures()[B].failures_p_value == 1.0


def test_scores_keep_one_decimal() -> None:
    build = _Spans()
    build.many(A, 299)
    build.many(A, 1, UNAVAILABLE)  # the best peer: 1 in 300
    build.many(B, 70)
    build.many(B, 30, UNAVAILABLE)  # 30 - 100 / 300 = 29.67 beyond it
    (suspect,) = build_report(build.spans).suspects
    assert suspect.score == 29.7 and isinstance(suspect.score, float)


def _slow_run(peer_extra: list[float], here: list[float], peer_ms: float = 1.0) -> EndpointFigures:
    build = _Spans()
    build.many(A, 200, millis=peer_ms)
    for millis in peer_extra:
        build.many(A, 1, millis=millis)
    for millis in here:
        build.many(B, 1, millis=millis)
    return build.figures()[B]


def test_the_slow_limit_is_ten_times_the_p99_and_ten_ms_more() -> None:
    # p99 1 ms: the limit is 11 ms (the margin); 11 ms is not over it, 11.5 ms is.
    figures = _slow_run([], [11.0, 11.5, 10.5])
    assert (figures.best_peer_p99_ms, figures.slow_attempts) == (1.0, 1)
    # p99 100 ms: the limit is 1,000 ms (the factor); 500 ms is not slow.
    figures = _slow_run([], [500.0, 1000.0, 1000.5], peer_ms=100.0)
    assert figures.slow_attempts == 1


def test_the_peers_slow_attempts_count_against_the_same_limit() -> None:
    # The peer: 200 at 1 ms, one at exactly the 11 ms limit, one over it (p99 still 1 ms).
    figures = _slow_run([11.0, 100.0], [1.0] * 80 + [100.0] * 20)
    assert figures.slow_attempts == 20
    assert figures.excess_slow == pytest.approx(20 - 100 * 1 / 202)
    assert figures.slow_p_value == pytest.approx(_tail(20, 21, 100 / 302), rel=1e-9)


def test_slow_attempts_against_a_peer_with_no_successes_are_no_evidence() -> None:
    build = _Spans()
    build.many(A, 20, UNAVAILABLE, millis=1.0)
    build.many(B, 20, millis=500.0)
    figures = build.figures()[B]
    assert figures.slow_attempts == 20  # over the limit, but nothing to compare them with
    assert (figures.excess_slow, figures.slow_p_value) == (0.0, 1.0)


def test_status_codes_outside_the_table_are_named_by_number() -> None:
    build = _Spans()
    build.call([(A, 17, 1.0)], 17)
    build.call([(A, 16, 1.0)], 16)
    build.call([(A, -1, 1.0)], -1)
    assert build.figures()[A].failures_by_code == {"CODE_17": 1, "UNAUTHENTICATED": 1, "CODE_-1": 1}


def test_an_attempt_without_a_code_is_ok_unless_its_status_is_an_error() -> None:
    build = _Spans()
    build.call([(A, OK, 1.0)], None)  # the call: no code, no error status: OK
    attempt = build.spans[0]
    build.spans[0] = dataclasses.replace(
        attempt, attributes={"server.address": "h", "server.port": 1}
    )
    figures = build.figures()["h:1"]
    assert (figures.failures, figures.abandoned) == (0, 0)
    build = _Spans()
    build.call([(A, CANCELLED, 1.0), (B, OK, 1.0)], None)  # the call was OK: a lost race
    assert build.figures()[A].abandoned == 1
    build = _Spans()
    build.call([(A, CANCELLED, 1.0), (B, OK, 1.0)], None, error=True)  # the call failed
    assert build.figures()[A].failures_by_code == {"CANCELLED": 1}


def test_the_evidence_and_the_text_report_word_for_word() -> None:
    build = _Spans()
    build.many(A, 1000, millis=10.0)
    for _ in range(20):
        build.call([(B, UNAVAILABLE, 1.0), (A, OK, 10.0)], OK)
    for _ in range(10):
        build.call([(B, 13, 1.0), (A, OK, 10.0)], OK, hedge_last=True)
    build.many(B, 70, millis=10.0)
    build.event_span("endpoint.heartbeat_missed", {"server.address": "127.0.0.1", "server.port": 2})
    report = build_report(build.spans)
    (suspect,) = report.suspects
    assert suspect.evidence == (
        "30% of 100 attempts failed (20 UNAVAILABLE, 10 INTERNAL; best peer 0%); "
        "1 heartbeat miss; 30 calls rescued (20 by retry, 10 by hedge)"
    )
    assert suspect.score == 31
    assert format_report(report) == "\n".join(
        [
            "2,231 spans, 1,100 calls, 1,130 attempts",
            "",
            "endpoint              attempts failed  rate      p50       p99 timeouts"
            " ejected hb miss rescued",
            "127.0.0.1:1              1,030      0    0%    10 ms     10 ms        0"
            "       0       0       0",
            "127.0.0.1:2                100     30   30%    10 ms     10 ms        0"
            "       0       1      30",
            "",
            "failures at 127.0.0.1:2: UNAVAILABLE 20, INTERNAL 10",
            "",
            "Suspects, most severe first (score: incidents beyond the best peer):",
            "1. 127.0.0.1:2 (score 31): " + suspect.evidence,
        ]
    )


def test_the_report_without_suspects_says_so() -> None:
    build = _Spans()
    build.many(A, 2, millis=9.96)
    text = format_report(build_report(build.spans))
    assert "  10.0 ms   10.0 ms" in text  # under 10 ms: one decimal, rounded
    assert text.endswith(
        "\n\nNo suspects: no endpoint failed, stalled or was ejected significantly more "
        "than its peers."
    )


def test_equal_scores_rank_by_address() -> None:
    build = _Spans()
    for port in (3, 1, 2):
        build.event_span("endpoint.ejected", {"server.address": "127.0.0.1", "server.port": port})
    ranked = [(one.endpoint, one.score) for one in build_report(build.spans).suspects]
    assert ranked == [(A, 1), (B, 1), (C, 1)]


def _tied_peers(first: str) -> list[Span]:
    """A fails 6 of 100; B and C never fail (B 10 attempts, C 1,000), in either order."""
    build = _Spans()
    build.many(A, 94)
    build.many(A, 6, UNAVAILABLE)
    for endpoint in (B, C) if first == B else (C, B):
        build.many(endpoint, 10 if endpoint == B else 1000, millis=1.0)
    return build.spans


def test_of_peers_equally_good_the_one_with_most_attempts_is_the_best_peer() -> None:
    # Against B's 10 clean attempts, 6 failures in 100 are likely (p = (100/110) ** 6); against
    # C's 1,000 they are not. The report must not depend on the order of the spans.
    reports = [build_report(_tied_peers(first)) for first in (B, C)]
    assert reports[0].endpoints == reports[1].endpoints
    assert reports[0].suspects == reports[1].suspects
    figures = {one.endpoint: one for one in reports[0].endpoints}[A]
    assert figures.failures_p_value == pytest.approx((100 / 1100) ** 6)
    assert [one.endpoint for one in reports[0].suspects] == [A]
