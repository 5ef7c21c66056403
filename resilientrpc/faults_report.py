"""The fault report of ``resilientrpc faults``: spans in, per-endpoint figures and suspects out.

Pure analysis, no I/O: :func:`parse_spans` turns an OTLP JSON document (what the
OpenTelemetry file exporter writes, one ``ExportTraceServiceRequest`` per line) or the
JSON of Jaeger's query API into :class:`Span` values, and :func:`build_report` reads the
spans the tracing code emits (docs: the span schema of issue 10):

- an *attempt* is a span named ``Attempt.{service}/{method}`` with ``server.address`` and
  ``server.port``; its endpoint is ``address:port``, its code ``rpc.grpc.status_code``
  or, from spans made with the stable RPC conventions, ``rpc.response.status_code`` (a
  code's name; missing both: UNKNOWN if the span's status is ERROR, else OK), its
  latency the span's length;
- its parent is the *call* span; a call whose final code is OK and that has a failed
  attempt on an endpoint counts as one call *rescued* on that endpoint, by a retry or, if
  the attempt that succeeded was a hedge, by a hedge. An attempt CANCELLED inside a call
  that succeeded lost a race to another attempt: it is *abandoned*, not a failure;
- ``endpoint.ejected`` and ``endpoint.heartbeat_missed``, as span events or as spans of
  their own, count per endpoint (``server.address``, with ``:server.port`` appended when
  that attribute is there). One occurrence recorded on several spans at the same instant
  counts once.

Suspects. An endpoint is a suspect on evidence that is statistically real, measured
against the *best peer* (of the other endpoints, the one with the lowest failure rate; for
latency, the one with the lowest p99; of equals, the one with the most attempts, then the
first address, so the order of the spans never matters):

- its failed attempts, when they are *significant*: were the endpoint as good as its best
  peer, each of the failures the two had would fall on it with the chance of its share of
  their attempts, so the chance of it having at least as many is a binomial tail (the
  exact test comparing two Poisson rates). Significant means that chance is below
  :data:`SIGNIFICANCE` (0.001) *and* the failures beyond what the peer's rate predicts for
  as many attempts (``failures - attempts * best_peer_rate``) number at least
  :data:`MIN_EXCESS` (5). With equal traffic and a peer that never fails, 10 failures
  are significant (0.5 ** 10 < 0.001) and 9 are not; one failure in 1,000 never is, and
  neither is a burst of four however many attempts the peer had;
- its slow attempts (successful ones slower than ten times the best peer's p99, and
  10 ms more), tested the same way against that peer's attempts over the same limit;
- each ejection and each heartbeat miss: those are always evidence.

A lone endpoint has no peer to be measured against: only its ejections and heartbeat
misses make it a suspect.

Severity score (the suspects' order). It counts the incidents that harmed or risked
calls, each worth one: the excess failures and excess slow attempts that are significant,
every ejection and heartbeat miss. The score is harm done, not how broken a backend looks:
a backend that fails 30 % of 3,000 attempts fast scores about 900, while a hung one is
found by its heartbeats and ejected after a dozen timeouts and three misses, scoring
about 15, so the failing backend ranks first and the hung one second, each with its
evidence in words.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import re
import string
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from resilientrpc.errors import ConfigError

__all__ = [
    "ENDPOINT_EVENTS",
    "MIN_EXCESS",
    "SIGNIFICANCE",
    "STATUS_NAMES",
    "AttributeValue",
    "EndpointFigures",
    "Event",
    "Report",
    "Span",
    "Suspect",
    "build_report",
    "format_report",
    "parse_jaeger",
    "parse_otlp",
    "parse_spans",
    "report_to_json",
]

AttributeValue = str | int | float | bool

#: gRPC status code names by number (the numbers are gRPC's wire values).
STATUS_NAMES: tuple[str, ...] = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)
_OK, _CANCELLED, _UNKNOWN, _DEADLINE_EXCEEDED = 0, 1, 2, 4
#: Status code numbers by name (the stable conventions record the name).
_CODE_OF_NAME = {name: number for number, name in enumerate(STATUS_NAMES)}
#: Endpoint event names the report counts, and the figure each one feeds.
ENDPOINT_EVENTS = {"endpoint.ejected": "ejections", "endpoint.heartbeat_missed": "heartbeat_misses"}
_ATTEMPT_PREFIX = "Attempt."
#: A successful attempt is slow if it took this many times the best peer's p99 ...
_SLOW_FACTOR = 10.0
#: ... and at least this much more, in milliseconds (so 0.2 ms vs 2.5 ms is not slow).
_SLOW_MARGIN_MS = 10.0
#: Evidence counts when an endpoint as good as its best peer would show as much with
#: less than this chance ...
SIGNIFICANCE = 0.001
#: ... and it is at least this many incidents beyond what the peer's rate predicts.
MIN_EXCESS = 5.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class Event:
    """A span event: its name, time (ns since the epoch) and attributes."""

    name: str
    time_ns: int
    attributes: Mapping[str, AttributeValue]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Span:
    """One span, whichever format it came in. Ids are opaque strings, compared only."""

    trace_id: str
    span_id: str
    parent_id: str
    name: str
    start_ns: int
    end_ns: int
    error: bool
    attributes: Mapping[str, AttributeValue]
    events: tuple[Event, ...] = ()


@dataclasses.dataclass(frozen=True, kw_only=True)
class EndpointFigures:
    """What the spans say about one endpoint (``host:port``)."""

    endpoint: str
    attempts: int
    failures: int
    failures_by_code: Mapping[str, int]
    failure_rate: float
    p50_ms: float
    p99_ms: float
    timeouts: int
    abandoned: int
    ejections: int
    heartbeat_misses: int
    rescued_by_retry: int
    rescued_by_hedge: int
    slow_attempts: int
    best_peer_failure_rate: float | None
    best_peer_p99_ms: float | None
    #: Failures beyond the best peer's rate, and the chance of at least as many failures
    #: were the endpoint as good as that peer (1.0 with no peer to compare).
    excess_failures: float
    failures_p_value: float
    #: The same for slow attempts, against the lowest-p99 peer's attempts over the limit.
    excess_slow: float
    slow_p_value: float


@dataclasses.dataclass(frozen=True, kw_only=True)
class Suspect:
    """An endpoint with significant evidence against it, its score and the evidence in words."""

    endpoint: str
    score: float
    evidence: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Report:
    """The whole report: counts, per-endpoint figures (by address) and ranked suspects."""

    spans: int
    calls: int
    attempts: int
    endpoints: tuple[EndpointFigures, ...]
    suspects: tuple[Suspect, ...]


# --- reading ---------------------------------------------------------------------------


#: Leading bytes of compressed files, and what wrote them.
_COMPRESSED = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd"}
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_TRACE_ID_BYTES, _SPAN_ID_BYTES = 16, 8


def parse_spans(text: str | bytes) -> list[Span]:
    """Spans of a file's contents: OTLP JSON (one document or JSON lines) or Jaeger JSON.

    What the writers write (tests/test_faults_file.py checks it against the real ones):

    - opentelemetry-exporter-otlp-json-file (0.66b1: ``FileSpanExporter(path)``, appending,
      or ``FileSpanExporter(stream=...)``; it needs opentelemetry-sdk ~= 1.45.1): JSON
      lines, one compact ``ExportTraceServiceRequest`` per export (per batch of a batch
      span processor, per span of a simple one), never compressed. It follows OTLP's "JSON
      Protobuf Encoding": lowerCamelCase keys, ``traceId`` / ``spanId`` in lowercase hex,
      enums (``kind``, ``status.code``) as integers, int64 (``intValue``, times) as strings.
    - the Collector's ``file`` exporter with ``format: json`` (the default): the same, one
      request per line. Its ``format: proto`` is binary and ``compression: zstd`` writes
      zstd frames of its own; no exporter writes gzip. Those files get a clear error.
    - ``google.protobuf.json_format.MessageToJson`` of the request the OTLP/gRPC exporter
      sends (``opentelemetry.exporter.otlp.proto.common.trace_encoder.encode_spans``), and
      the ``--listen`` receiver's ``MessageToDict``: protobuf's own JSON mapping, with bytes
      (so the ids) in base64, enums by name (``STATUS_CODE_ERROR``), and from
      ``MessageToJson`` one indented document over many lines.
    - Jaeger's query API (``/api/traces``): ``{"data": [{"traceID", "spans", "processes"}]}``,
      hex ids, microsecond times, tags, logs and references.

    So the text is read as JSON documents one after another (one document, JSON lines, or
    indented documents in a row), each OTLP or Jaeger. OTLP ids become lowercase hex however
    they were written (base64 of 16 or 8 bytes is decoded), so a trace's spans find their
    parents whichever writer wrote them. Bytes are decoded as UTF-8. Anything else
    (compressed or binary files, JSON in neither format) raises :class:`ConfigError`
    naming where it went wrong.
    """
    try:
        return _parse_spans(_decode(text) if isinstance(text, bytes) else text)
    except ConfigError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as error:
        # OverflowError: a time of Infinity (Python's json reads it) that int() refuses.
        raise ConfigError("file", f"not OTLP or Jaeger JSON ({error!r})") from None
    except RecursionError:  # JSON nested deeper than the interpreter can read or write
        raise ConfigError("file", "not OTLP or Jaeger JSON (nested too deeply)") from None


def _decode(data: bytes) -> str:
    for magic, kind in _COMPRESSED.items():
        if data.startswith(magic):
            raise ConfigError(
                "file", f"{kind}-compressed, not JSON: decompress it or export uncompressed"
            )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(
            "file", "not UTF-8 text (a binary format, such as the collector's `format: proto`?)"
        ) from None


def _documents(text: str) -> Iterator[tuple[int, Any]]:
    """``(line, document)`` of each JSON value in ``text``, in order."""
    decoder = json.JSONDecoder()
    position, line, counted = 0, 1, 0
    while True:
        position = _WHITESPACE.match(text, position).end()  # type: ignore[union-attr]  # [ ...]* always matches
        if position == len(text):
            return
        line += text.count("\n", counted, position)
        counted = position
        try:
            document, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as error:
            where = "" if error.lineno == line else f" (line {error.lineno})"
            raise ConfigError(f"line {line}", f"not JSON: {error.msg}{where}") from None
        yield line, document
        position = end


def _parse_spans(text: str) -> list[Span]:
    documents = list(_documents(text))
    spans: list[Span] = []
    for line, document in documents:
        where = f"line {line}" if len(documents) > 1 else "[0]"
        if isinstance(document, dict) and "data" in document:
            spans += parse_jaeger(document)
        else:
            spans += _otlp_document(document, where)
    return spans


def _otlp_id(value: Any, size: int) -> str:
    """An OTLP id as lowercase hex: as OTLP JSON writes it, or base64 as protobuf's mapping does."""
    text = str(value)
    if len(text) == 2 * size and all(char in string.hexdigits for char in text):
        return text.lower()
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error
        return text
    return raw.hex() if len(raw) == size else text


def _otlp_value(value: Mapping[str, Any]) -> AttributeValue:
    if "stringValue" in value:
        return str(value["stringValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        return int(value["intValue"])  # int64 is a string in OTLP JSON
    if "doubleValue" in value:
        return float(value["doubleValue"])
    return json.dumps(value, sort_keys=True)  # arrays, maps, bytes: kept as text


def _otlp_attributes(items: Iterable[Mapping[str, Any]]) -> dict[str, AttributeValue]:
    return {str(item["key"]): _otlp_value(item.get("value", {})) for item in items}


def _otlp_error(status: Mapping[str, Any]) -> bool:
    code = status.get("code", 0)
    return code in (2, "STATUS_CODE_ERROR")  # a number in OTLP JSON, a name from protobuf


def parse_otlp(documents: Iterable[Any]) -> list[Span]:
    """Spans of OTLP ``ExportTraceServiceRequest`` objects in their JSON mapping."""
    spans: list[Span] = []
    for index, document in enumerate(documents):
        spans += _otlp_document(document, f"[{index}]")
    return spans


def _otlp_document(document: Any, where: str) -> list[Span]:
    if not isinstance(document, dict) or "resourceSpans" not in document:
        raise ConfigError(where, "expected an OTLP object with 'resourceSpans'")
    spans: list[Span] = []
    for resource in document["resourceSpans"]:
        for scope in resource.get("scopeSpans", ()):
            for raw in scope.get("spans", ()):
                events = tuple(
                    Event(
                        name=str(event.get("name", "")),
                        time_ns=int(event.get("timeUnixNano", 0)),
                        attributes=_otlp_attributes(event.get("attributes", ())),
                    )
                    for event in raw.get("events", ())
                )
                spans.append(
                    Span(
                        trace_id=_otlp_id(raw.get("traceId", ""), _TRACE_ID_BYTES),
                        span_id=_otlp_id(raw.get("spanId", ""), _SPAN_ID_BYTES),
                        parent_id=_otlp_id(raw.get("parentSpanId", ""), _SPAN_ID_BYTES),
                        name=str(raw.get("name", "")),
                        start_ns=int(raw.get("startTimeUnixNano", 0)),
                        end_ns=int(raw.get("endTimeUnixNano", 0)),
                        error=_otlp_error(raw.get("status", {})),
                        attributes=_otlp_attributes(raw.get("attributes", ())),
                        events=events,
                    )
                )
    return spans


def _jaeger_tags(items: Iterable[Mapping[str, Any]]) -> dict[str, AttributeValue]:
    tags: dict[str, AttributeValue] = {}
    for item in items:
        value = item.get("value")
        kind = item.get("type", "string")
        if kind == "int64":
            tags[str(item["key"])] = int(value)  # type: ignore[arg-type]
        elif kind == "float64":
            tags[str(item["key"])] = float(value)  # type: ignore[arg-type]
        elif kind == "bool":
            tags[str(item["key"])] = value in (True, "true")
        else:
            tags[str(item["key"])] = str(value)
    return tags


def parse_jaeger(document: Mapping[str, Any]) -> list[Span]:
    """Spans of the JSON that Jaeger's query API returns (``{"data": [trace, ...]}``)."""
    spans: list[Span] = []
    for trace in document.get("data") or ():
        for raw in trace.get("spans", ()):
            parent = next(
                (
                    str(ref.get("spanID", ""))
                    for ref in raw.get("references", ())
                    if ref.get("refType") == "CHILD_OF"
                ),
                "",
            )
            tags = _jaeger_tags(raw.get("tags", ()))
            events = []
            for log in raw.get("logs", ()):
                fields = _jaeger_tags(log.get("fields", ()))
                name = str(fields.pop("event", ""))
                events.append(
                    Event(name=name, time_ns=int(log.get("timestamp", 0)) * 1000, attributes=fields)
                )
            start_ns = int(raw.get("startTime", 0)) * 1000
            spans.append(
                Span(
                    trace_id=str(raw.get("traceID", trace.get("traceID", ""))),
                    span_id=str(raw.get("spanID", "")),
                    parent_id=parent,
                    name=str(raw.get("operationName", "")),
                    start_ns=start_ns,
                    end_ns=start_ns + int(raw.get("duration", 0)) * 1000,
                    error=tags.get("otel.status_code") == "ERROR" or tags.get("error") is True,
                    attributes=tags,
                    events=tuple(events),
                )
            )
    return spans


# --- analysis --------------------------------------------------------------------------


def _percentile(sorted_ms: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not sorted_ms:
        return 0.0
    return sorted_ms[max(0, math.ceil(fraction * len(sorted_ms)) - 1)]


def _code(span: Span) -> int:
    """The span's status code: ``rpc.grpc.status_code`` (v1.37 conventions), else
    ``rpc.response.status_code`` (the stable ones: the code's name; a name that is no
    gRPC code's is UNKNOWN), else UNKNOWN for an ERROR status, OK otherwise."""
    attributes = span.attributes
    code = attributes.get("rpc.grpc.status_code")
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    name = attributes.get("rpc.response.status_code")
    if isinstance(name, str):
        return _CODE_OF_NAME.get(name, _UNKNOWN)
    return _UNKNOWN if span.error else _OK


def _code_name(code: int) -> str:
    return STATUS_NAMES[code] if 0 <= code < len(STATUS_NAMES) else f"CODE_{code}"


def _endpoint(attributes: Mapping[str, AttributeValue]) -> str | None:
    """``server.address:server.port`` (IPv6 in brackets), or the address alone without a port."""
    address = attributes.get("server.address")
    if address is None:
        return None
    port = attributes.get("server.port")
    if port is None:
        return str(address)
    return f"[{address}]:{port}" if ":" in str(address) else f"{address}:{port}"


def _endpoint_events(spans: Iterable[Span]) -> Counter[tuple[str, str]]:
    """``(endpoint, figure) -> count`` of endpoint events, each occurrence once."""
    seen: set[tuple[str, str, int]] = set()
    for span in spans:
        occurrences = [(span.name, span.start_ns, span.attributes)]
        occurrences += [(event.name, event.time_ns, event.attributes) for event in span.events]
        for name, time_ns, attributes in occurrences:
            endpoint = _endpoint(attributes)
            if name in ENDPOINT_EVENTS and endpoint is not None:
                seen.add((name, endpoint, time_ns))
    return Counter((endpoint, ENDPOINT_EVENTS[name]) for name, endpoint, _ in seen)


@dataclasses.dataclass
class _Tally:
    latencies_ms: list[float] = dataclasses.field(default_factory=list)
    codes: Counter[str] = dataclasses.field(default_factory=Counter)
    ok_latencies_ms: list[float] = dataclasses.field(default_factory=list)
    abandoned: int = 0
    rescued: Counter[str] = dataclasses.field(default_factory=Counter)


def build_report(spans: Sequence[Span]) -> Report:
    """Per-endpoint figures and the ranked suspects (the module docstring has the rules)."""
    by_id = {(span.trace_id, span.span_id): span for span in spans}
    tallies: dict[str, _Tally] = defaultdict(_Tally)
    per_call: dict[tuple[str, str], list[tuple[str, Span]]] = defaultdict(list)
    attempts = 0
    for span in spans:
        endpoint = _endpoint(span.attributes)
        if span.name.startswith(_ATTEMPT_PREFIX) and endpoint is not None:
            per_call[(span.trace_id, span.parent_id)].append((endpoint, span))
            attempts += 1
    for call_key, members in per_call.items():
        call = by_id.get(call_key)
        call_ok = call is not None and _code(call) == _OK
        winner_hedge = any(
            _code(span) == _OK and span.attributes.get("resilientrpc.hedge") is True
            for _, span in members
        )
        failed_on: set[str] = set()
        for endpoint, span in members:
            tally = tallies[endpoint]
            latency_ms = (span.end_ns - span.start_ns) / 1e6
            tally.latencies_ms.append(latency_ms)
            code = _code(span)
            if code == _OK:
                tally.ok_latencies_ms.append(latency_ms)
            elif code == _CANCELLED and call_ok:
                tally.abandoned += 1
            else:
                tally.codes[_code_name(code)] += 1
                failed_on.add(endpoint)
        if call_ok:
            for endpoint in failed_on:
                tallies[endpoint].rescued["hedge" if winner_hedge else "retry"] += 1
    incidents = _endpoint_events(spans)
    for endpoint, _ in incidents:
        tallies.setdefault(endpoint, _Tally())
    figures = [
        _figures(endpoint, tally, incidents, tallies) for endpoint, tally in sorted(tallies.items())
    ]
    suspects = sorted(
        (suspect for suspect in (_suspect(one) for one in figures) if suspect),
        key=lambda suspect: (-suspect.score, suspect.endpoint),
    )
    return Report(
        spans=len(spans),
        calls=len(per_call),
        attempts=attempts,
        endpoints=tuple(figures),
        suspects=tuple(suspects),
    )


def _versus(count: int, attempts: int, peer_count: int, peer_attempts: int) -> tuple[float, float]:
    """``count`` incidents in ``attempts`` against a peer's: the excess beyond the peer's
    rate, and the chance of ``count`` or more of the pair's incidents falling on this side
    were both sides alike, each with this side's share of the attempts (a binomial tail).
    Nothing to compare (no attempts on either side): no excess, chance 1.

    >>> excess, chance = _versus(10, 1000, 0, 1000)
    >>> excess, round(chance, 6)  # 0.5 ** 10
    (10.0, 0.000977)
    """
    if attempts == 0 or peer_attempts == 0:
        return 0.0, 1.0
    excess = max(0.0, count - attempts * peer_count / peer_attempts)
    trials = count + peer_count
    share = attempts / (attempts + peer_attempts)
    if count <= trials * share:  # no more than expected: nothing to explain
        return excess, 1.0
    log_share, log_rest, log_trials = math.log(share), math.log1p(-share), math.lgamma(trials + 1)
    tail = 0.0
    for hits in range(count, trials + 1):  # past the mean, each term is smaller than the last
        term = math.exp(
            log_trials
            - math.lgamma(hits + 1)
            - math.lgamma(trials - hits + 1)
            + hits * log_share
            + (trials - hits) * log_rest
        )
        tail += term
        if term <= tail * 1e-17:
            break
    return excess, min(1.0, tail)


def _significant(excess: float, p_value: float) -> float:
    """``excess`` if it is evidence (the module docstring's rule), else nothing."""
    return excess if p_value < SIGNIFICANCE and excess >= MIN_EXCESS else 0.0


def _failures(tally: _Tally) -> int:
    return sum(tally.codes.values())


def _figures(
    endpoint: str,
    tally: _Tally,
    incidents: Mapping[tuple[str, str], int],
    tallies: Mapping[str, _Tally],
) -> EndpointFigures:
    latencies = sorted(tally.latencies_ms)
    failures = _failures(tally)
    # Of peers equally good, the best is the one with the most attempts (its rate is the
    # surest), then the first address: the report does not depend on the spans' order.
    peers = sorted(
        (peer for name, peer in sorted(tallies.items()) if name != endpoint and peer.latencies_ms),
        key=lambda peer: -len(peer.latencies_ms),
    )
    best_rate = best_p99 = None
    excess_failures = excess_slow = 0.0
    failures_p = slow_p = 1.0
    slow = 0
    if peers:
        rate_peer = min(peers, key=lambda peer: _failures(peer) / len(peer.latencies_ms))
        best_rate = _failures(rate_peer) / len(rate_peer.latencies_ms)
        excess_failures, failures_p = _versus(
            failures, len(latencies), _failures(rate_peer), len(rate_peer.latencies_ms)
        )
        p99s = [_percentile(sorted(peer.latencies_ms), 0.99) for peer in peers]
        best_p99 = min(p99s)
        fast_peer = peers[p99s.index(best_p99)].ok_latencies_ms
        limit = max(best_p99 * _SLOW_FACTOR, best_p99 + _SLOW_MARGIN_MS)
        slow = sum(1 for latency in tally.ok_latencies_ms if latency > limit)
        peer_slow = sum(1 for latency in fast_peer if latency > limit)
        excess_slow, slow_p = _versus(slow, len(tally.ok_latencies_ms), peer_slow, len(fast_peer))
    return EndpointFigures(
        endpoint=endpoint,
        attempts=len(latencies),
        failures=failures,
        failures_by_code=dict(tally.codes.most_common()),
        failure_rate=failures / len(latencies) if latencies else 0.0,
        p50_ms=_percentile(latencies, 0.50),
        p99_ms=_percentile(latencies, 0.99),
        timeouts=tally.codes[_code_name(_DEADLINE_EXCEEDED)],
        abandoned=tally.abandoned,
        ejections=incidents.get((endpoint, "ejections"), 0),
        heartbeat_misses=incidents.get((endpoint, "heartbeat_misses"), 0),
        rescued_by_retry=tally.rescued["retry"],
        rescued_by_hedge=tally.rescued["hedge"],
        slow_attempts=slow,
        best_peer_failure_rate=best_rate,
        best_peer_p99_ms=best_p99,
        excess_failures=excess_failures,
        failures_p_value=failures_p,
        excess_slow=excess_slow,
        slow_p_value=slow_p,
    )


def _plural(count: int, word: str, plural: str = "") -> str:
    return f"{count:,} {word if count == 1 else plural or word + 's'}"


def _ms(value: float) -> str:
    return f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def _suspect(one: EndpointFigures) -> Suspect | None:
    best_rate = one.best_peer_failure_rate or 0.0
    best_p99 = one.best_peer_p99_ms
    score = (
        _significant(one.excess_failures, one.failures_p_value)
        + _significant(one.excess_slow, one.slow_p_value)
        + one.ejections
        + one.heartbeat_misses
    )
    if score <= 0:
        return None
    words: list[str] = []
    other_codes = {
        code: count for code, count in one.failures_by_code.items() if code != "DEADLINE_EXCEEDED"
    }
    if other_codes:
        codes = ", ".join(f"{count:,} {code}" for code, count in other_codes.items())
        words.append(
            f"{one.failure_rate:.0%} of {_plural(one.attempts, 'attempt')} failed "
            f"({codes}; best peer {best_rate:.0%})"
        )
    if one.timeouts:
        words.append(f"{_plural(one.timeouts, 'timeout')} (DEADLINE_EXCEEDED)")
    if (one.timeouts or one.slow_attempts) and best_p99 is not None:
        words.append(f"p99 {_ms(one.p99_ms)} vs best peer {_ms(best_p99)}")
    if one.slow_attempts:
        words.append(f"{_plural(one.slow_attempts, 'slow attempt')} (over 10x the peers' p99)")
    if one.heartbeat_misses:
        words.append(_plural(one.heartbeat_misses, "heartbeat miss", "heartbeat misses"))
    if one.ejections:
        words.append(_plural(one.ejections, "ejection"))
    rescued = one.rescued_by_retry + one.rescued_by_hedge
    if rescued:
        words.append(
            f"{_plural(rescued, 'call')} rescued ({one.rescued_by_retry:,} by retry, "
            f"{one.rescued_by_hedge:,} by hedge)"
        )
    return Suspect(endpoint=one.endpoint, score=round(score, 1), evidence="; ".join(words))


# --- output ----------------------------------------------------------------------------


def report_to_json(report: Report) -> dict[str, Any]:
    """The report as plain JSON values (``--json``)."""
    return dataclasses.asdict(report)


_COLUMNS = (
    ("endpoint", 21),
    ("attempts", 9),
    ("failed", 7),
    ("rate", 6),
    ("p50", 9),
    ("p99", 10),
    ("timeouts", 9),
    ("ejected", 8),
    ("hb miss", 8),
    ("rescued", 8),
)


def format_report(report: Report) -> str:
    """The report as text: a table per endpoint, failures by code, then the suspects."""
    lines = [
        f"{report.spans:,} spans, {report.calls:,} calls, {report.attempts:,} attempts",
        "",
        "".join(
            f"{name:<{width}}" if index == 0 else f"{name:>{width}}"
            for index, (name, width) in enumerate(_COLUMNS)
        ).rstrip(),
    ]
    for one in report.endpoints:
        cells = (
            one.endpoint,
            f"{one.attempts:,}",
            f"{one.failures:,}",
            f"{one.failure_rate:.0%}",
            _ms(one.p50_ms),
            _ms(one.p99_ms),
            f"{one.timeouts:,}",
            f"{one.ejections:,}",
            f"{one.heartbeat_misses:,}",
            f"{one.rescued_by_retry + one.rescued_by_hedge:,}",
        )
        lines.append(
            "".join(
                f"{cell:<{width}}" if index == 0 else f"{cell:>{width}}"
                for index, (cell, (_, width)) in enumerate(zip(cells, _COLUMNS, strict=True))
            )
        )
    lines.append("")
    for one in report.endpoints:
        if one.failures_by_code:
            codes = ", ".join(f"{code} {count:,}" for code, count in one.failures_by_code.items())
            lines.append(f"failures at {one.endpoint}: {codes}")
    lines.append("")
    if not report.suspects:
        lines.append(
            "No suspects: no endpoint failed, stalled or was ejected significantly more "
            "than its peers."
        )
    else:
        lines.append("Suspects, most severe first (score: incidents beyond the best peer):")
        for rank, suspect in enumerate(report.suspects, start=1):
            score = f"{suspect.score:,.1f}".removesuffix(".0")
            lines.append(f"{rank}. {suspect.endpoint} (score {score}): {suspect.evidence}")
    return "\n".join(lines)
