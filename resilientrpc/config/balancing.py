"""``loadBalancingConfig`` (and the deprecated ``loadBalancingPolicy``): the policy values
and their parsing.

gRPC's policies (``pick_first``, ``round_robin``, A58 ``weighted_round_robin``, A48
``least_request``, A42/A76 ``ring_hash``) plus the extensions ``peak_ewma``, ``random``
and static ``weights`` for ``weighted_round_robin``. Each policy is a row in
``_POLICIES``: its field table and how to build its value.

Limits on numbers (beyond gRPC's own):

* static ``weights`` are finite, > 0 and at most :data:`MAX_STATIC_WEIGHT` (larger ones
  are refused); keys are addresses written as the targets write them, and every key must
  be one of the channel's target addresses (:func:`check_weights_match_targets`) unless
  the target is ``dns:///``, whose resolved ``ip:port`` addresses the keys then match;
* ``choiceCount`` above :data:`MAX_CHOICE_COUNT` is clamped to it, as in gRPC, with a
  warning on the ``resilientrpc.config`` logger naming the path and the value.

``outlier_detection`` (A50; also ``outlier_detection_experimental``) is a row too: it
wraps the first supported policy of its ``childPolicy`` (which cannot be another
``outlier_detection``), and the selection is a :class:`BalancingChoice` of the child and
the wrapper's :class:`~resilientrpc.config.outlier.OutlierDetection`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias

from resilientrpc.config._schema import (
    Field,
    Kind,
    bool_kind,
    child,
    describe,
    did_you_mean,
    duration_kind,
    expect_array,
    expect_object,
    integer_kind,
    mismatch,
    number_kind,
    read_fields,
)
from resilientrpc.config.outlier import (
    OUTLIER_DETECTION_FIELDS,
    OutlierDetection,
    build_outlier_detection,
)
from resilientrpc.errors import ConfigError
from resilientrpc.targets import join_address, parse_address

__all__ = [
    "DEFAULT_BLACKOUT_PERIOD",
    "DEFAULT_CHOICE_COUNT",
    "DEFAULT_ERROR_UTILIZATION_PENALTY",
    "DEFAULT_LOAD_BALANCING",
    "DEFAULT_MAX_RING_SIZE",
    "DEFAULT_MIN_RING_SIZE",
    "DEFAULT_OOB_REPORTING_PERIOD",
    "DEFAULT_PEAK_EWMA_DECAY",
    "DEFAULT_WEIGHT_EXPIRATION_PERIOD",
    "DEFAULT_WEIGHT_UPDATE_PERIOD",
    "MAX_CHOICE_COUNT",
    "MAX_STATIC_WEIGHT",
    "MIN_CHOICE_COUNT",
    "MIN_WEIGHT_UPDATE_PERIOD",
    "RING_SIZE_LIMIT",
    "SUPPORTED_POLICIES",
    "BalancingChoice",
    "LeastRequest",
    "LoadBalancingPolicy",
    "PeakEwma",
    "PickFirst",
    "Random",
    "RingHash",
    "RoundRobin",
    "WeightedRoundRobin",
    "check_weights_match_targets",
    "load_balancing_config_kind",
    "load_balancing_policy_kind",
]

# weighted_round_robin (A58)
DEFAULT_BLACKOUT_PERIOD = 10.0
DEFAULT_WEIGHT_EXPIRATION_PERIOD = 180.0
DEFAULT_WEIGHT_UPDATE_PERIOD = 1.0
#: ``weightUpdatePeriod`` values below this are raised to it (A58).
MIN_WEIGHT_UPDATE_PERIOD = 0.1
DEFAULT_ERROR_UTILIZATION_PENALTY = 1.0
DEFAULT_OOB_REPORTING_PERIOD = 10.0
#: Static weights above this are refused: weights are relative (the scheduler honours at
#: most 10x the mean anyway), and this bound keeps any sum of them finite.
MAX_STATIC_WEIGHT = 1e9

# least_request (A48) and peak_ewma
DEFAULT_CHOICE_COUNT = 2
MIN_CHOICE_COUNT = 2
#: ``choiceCount`` values above this are treated as this one (A48), with a warning.
MAX_CHOICE_COUNT = 10
DEFAULT_PEAK_EWMA_DECAY = 10.0

# ring_hash (A42)
DEFAULT_MIN_RING_SIZE = 1024
#: gRPC's default for ``maxRingSize`` (A42 and ``service_config.proto``), not Envoy's 8M.
DEFAULT_MAX_RING_SIZE = 4096
#: Ring sizes above this are rejected (A42).
RING_SIZE_LIMIT = 8_388_608


class _FrozenMap(Mapping[str, float]):
    """A read-only, hashable mapping; repr like a dict."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, float]) -> None:
        self._data = dict(data)

    def __getitem__(self, key: str) -> float:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return repr(self._data)


@dataclass(frozen=True, kw_only=True, slots=True)
class PickFirst:
    """``pick_first``: every call to the first reachable address.

    >>> PickFirst(shuffle_address_list=True)
    PickFirst(shuffle_address_list=True)
    """

    name: ClassVar[str] = "pick_first"
    shuffle_address_list: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class RoundRobin:
    """``round_robin``: calls in turn over the endpoints that can take traffic.

    >>> RoundRobin()
    RoundRobin()
    """

    name: ClassVar[str] = "round_robin"


@dataclass(frozen=True, kw_only=True, slots=True)
class WeightedRoundRobin:
    """``weighted_round_robin`` (gRFC A58), weights from per-call ORCA reports or static.

    ``weights`` is an extension: ``{"host:port": weight}``; when it is set, load reports
    are not used. Out-of-band reports (``enableOobLoadReport: true``) are not supported;
    ``oob_reporting_period`` is accepted for compatibility and unused. ``weights_path`` is
    where the weights were read from, for errors found later against the targets.

    >>> WeightedRoundRobin(weights={"10.0.0.1:50051": 3.0}).weights
    {'10.0.0.1:50051': 3.0}
    """

    name: ClassVar[str] = "weighted_round_robin"
    weights: Mapping[str, float] | None = None
    blackout_period: float = DEFAULT_BLACKOUT_PERIOD
    weight_expiration_period: float = DEFAULT_WEIGHT_EXPIRATION_PERIOD
    weight_update_period: float = DEFAULT_WEIGHT_UPDATE_PERIOD
    error_utilization_penalty: float = DEFAULT_ERROR_UTILIZATION_PENALTY
    enable_oob_load_report: bool = False
    oob_reporting_period: float = DEFAULT_OOB_REPORTING_PERIOD
    weights_path: str = field(default="weights", repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.weights is not None and not isinstance(self.weights, _FrozenMap):
            object.__setattr__(self, "weights", _FrozenMap(self.weights))


@dataclass(frozen=True, kw_only=True, slots=True)
class LeastRequest:
    """``least_request`` (gRFC A48): the fewest outstanding calls of ``choice_count`` picks.

    >>> LeastRequest(choice_count=3)
    LeastRequest(choice_count=3)
    """

    name: ClassVar[str] = "least_request"
    choice_count: int = DEFAULT_CHOICE_COUNT


@dataclass(frozen=True, kw_only=True, slots=True)
class PeakEwma:
    """``peak_ewma`` (extension): lowest peak-sensitive latency estimate of a few picks.

    ``decay`` is the time constant, in seconds, of the moving average.

    >>> PeakEwma(decay=5.0)
    PeakEwma(decay=5.0, choice_count=2)
    """

    name: ClassVar[str] = "peak_ewma"
    decay: float = DEFAULT_PEAK_EWMA_DECAY
    choice_count: int = DEFAULT_CHOICE_COUNT


@dataclass(frozen=True, kw_only=True, slots=True)
class Random:
    """``random`` (extension): a uniformly random endpoint for each call.

    >>> Random()
    Random()
    """

    name: ClassVar[str] = "random"


@dataclass(frozen=True, kw_only=True, slots=True)
class RingHash:
    """``ring_hash`` (gRFC A42, A76): consistent hashing on one request header.

    ``request_hash_header`` is a lower-case metadata key (not ``-bin``); calls with the same
    value go to the same endpoint while it is up.

    >>> RingHash(request_hash_header="x-user-id")
    RingHash(request_hash_header='x-user-id', min_ring_size=1024, max_ring_size=4096)
    """

    name: ClassVar[str] = "ring_hash"
    request_hash_header: str
    min_ring_size: int = DEFAULT_MIN_RING_SIZE
    max_ring_size: int = DEFAULT_MAX_RING_SIZE


LoadBalancingPolicy: TypeAlias = (
    PickFirst | RoundRobin | WeightedRoundRobin | LeastRequest | PeakEwma | Random | RingHash
)


@dataclass(frozen=True, slots=True)
class BalancingChoice:
    """What ``loadBalancingConfig`` selects: the policy, and the outlier detection
    wrapping it (None without an ``outlier_detection`` entry)."""

    policy: LoadBalancingPolicy
    outlier_detection: OutlierDetection | None = None


#: The policy used when the config names none. gRPC's default is ``pick_first``; ours is
#: ``round_robin`` because spreading calls is what this library is for.
DEFAULT_LOAD_BALANCING: LoadBalancingPolicy = RoundRobin()


# ----------------------------------------------------------------------- static weights


def _weights_kind() -> Kind:
    expected = 'an object of "host:port" to weight, like {"10.0.0.1:50051": 2}'
    weight = number_kind(above=0, at_most=MAX_STATIC_WEIGHT)

    def convert(value: object, path: str) -> _FrozenMap:
        obj = expect_object(value, path, expected)
        if not obj:
            raise ConfigError(path, f"expected at least one address in {expected}, found {{}}")
        weights: dict[str, float] = {}
        for address, raw in obj.items():
            entry_path = f"{path}[{json.dumps(address)}]"
            try:
                key = join_address(*parse_address(address, entry_path))
            except ConfigError as exc:
                raise ConfigError(
                    entry_path,
                    f"expected an address 'host:port' as the key, found {json.dumps(address)}"
                    f" ({exc.message})",
                ) from None
            if key in weights:
                raise ConfigError(entry_path, f"expected each address once, found {key!r} again")
            weights[key] = weight.convert(raw, entry_path)
        return _FrozenMap(weights)

    return Kind(expected, convert)


def check_weights_match_targets(policy: LoadBalancingPolicy, addresses: Sequence[str]) -> None:
    """Refuse static weights for an address that is not one of ``addresses``.

    ``addresses`` are the channel's target addresses as :mod:`resilientrpc.targets` writes
    them; weight keys were written the same way when parsed. Not for ``dns:///`` targets,
    whose addresses are known only once resolved.
    """
    if not isinstance(policy, WeightedRoundRobin) or policy.weights is None:
        return
    known = set(addresses)
    for address in policy.weights:
        if address not in known:
            shown = ", ".join(addresses[:10]) + (", ..." if len(addresses) > 10 else "")
            raise ConfigError(
                f"{policy.weights_path}[{json.dumps(address)}]",
                f"expected one of the target addresses ({shown}), found {address!r}: "
                "a weight for an address that is not a target never applies",
            )


# ------------------------------------------------------------------------ other kinds


def _per_call_reports_only() -> Kind:
    expected = "false (out-of-band load reports are not supported; per-call reports are used)"

    def convert(value: object, path: str) -> bool:
        if value is not False:
            raise mismatch(path, expected, value)
        return False

    return Kind(expected, convert)


_METADATA_KEY = re.compile(r"[0-9a-z_.-]+")


def _hash_header_kind() -> Kind:
    expected = "a metadata key such as 'x-user-id' (letters, digits, '-', '_', '.'; not -bin)"

    def convert(value: object, path: str) -> str:
        if not isinstance(value, str):
            raise mismatch(path, expected, value)
        key = value.lower()  # metadata keys are case-insensitive; gRPC lower-cases them
        if not _METADATA_KEY.fullmatch(key) or key.endswith("-bin"):
            raise mismatch(path, expected, value)
        return key

    return Kind(expected, convert)


def _build_ring_hash(values: dict[str, Any], path: str) -> RingHash:
    low = values.get("min_ring_size", DEFAULT_MIN_RING_SIZE)
    high = values.get("max_ring_size", DEFAULT_MAX_RING_SIZE)
    if low > high:
        which = "maxRingSize" if "max_ring_size" in values else "the default maxRingSize"
        raise ConfigError(
            child(path, "minRingSize"),
            f"expected at most {which} ({high}), found the number {low}",
        )
    return RingHash(**values)


def _build_weighted(values: dict[str, Any], path: str) -> WeightedRoundRobin:
    return WeightedRoundRobin(**values, weights_path=child(path, "weights"))


_CHOICE_COUNT = integer_kind(
    minimum=MIN_CHOICE_COUNT, clamp_above=MAX_CHOICE_COUNT, warn_clamp=True, allow_string=True
)
_RING_SIZE = integer_kind(minimum=1, maximum=RING_SIZE_LIMIT, allow_string=True)


# ---------------------------------------------------------------------- policy table


@dataclass(frozen=True, slots=True)
class _Policy:
    """A supported ``loadBalancingConfig`` entry: its field table and how to build it."""

    fields: tuple[Field, ...]
    build: Callable[[dict[str, Any], str], LoadBalancingPolicy | BalancingChoice]
    #: Whether the policy cannot run on defaults alone (so not via ``loadBalancingPolicy``).
    needs_config: bool = False
    #: Whether the policy wraps a child policy (and so cannot be a child of another).
    wraps: bool = False

    def choose(self, values: dict[str, Any], path: str) -> BalancingChoice:
        built = self.build(values, path)
        return built if isinstance(built, BalancingChoice) else BalancingChoice(built)


_RING_HASH = _Policy(
    (
        Field("requestHashHeader", "request_hash_header", _hash_header_kind(), required=True),
        Field("minRingSize", "min_ring_size", _RING_SIZE),
        Field("maxRingSize", "max_ring_size", _RING_SIZE),
    ),
    _build_ring_hash,
    needs_config=True,
)
_LEAST_REQUEST = _Policy(
    (Field("choiceCount", "choice_count", _CHOICE_COUNT),),
    lambda v, _p: LeastRequest(**v),
)


def _build_outlier_detection(values: dict[str, Any], path: str) -> BalancingChoice:
    chosen: BalancingChoice = values.pop("child_policy")
    return BalancingChoice(chosen.policy, build_outlier_detection(values, path))


_OUTLIER_DETECTION = _Policy(
    (
        *OUTLIER_DETECTION_FIELDS,
        Field(
            "childPolicy",
            "child_policy",
            Kind(
                'an array of child policies, like [{"round_robin": {}}]',
                lambda value, path: _select(value, path, child_of="outlier_detection"),
            ),
            required=True,
        ),
    ),
    _build_outlier_detection,
    needs_config=True,
    wraps=True,
)

_POLICIES: dict[str, _Policy] = {
    "pick_first": _Policy(
        (Field("shuffleAddressList", "shuffle_address_list", bool_kind()),),
        lambda v, _p: PickFirst(**v),
    ),
    "round_robin": _Policy((), lambda v, _p: RoundRobin()),
    "weighted_round_robin": _Policy(
        (
            Field("weights", "weights", _weights_kind()),
            Field("blackoutPeriod", "blackout_period", duration_kind()),
            Field("weightExpirationPeriod", "weight_expiration_period", duration_kind()),
            Field(
                "weightUpdatePeriod",
                "weight_update_period",
                duration_kind(clamp_below=MIN_WEIGHT_UPDATE_PERIOD),
            ),
            Field("errorUtilizationPenalty", "error_utilization_penalty", number_kind(at_least=0)),
            Field("enableOobLoadReport", "enable_oob_load_report", _per_call_reports_only()),
            Field("oobReportingPeriod", "oob_reporting_period", duration_kind()),
        ),
        _build_weighted,
    ),
    "least_request": _LEAST_REQUEST,
    "least_request_experimental": _LEAST_REQUEST,
    "peak_ewma": _Policy(
        (
            Field("decay", "decay", duration_kind(positive=True)),
            Field("choiceCount", "choice_count", _CHOICE_COUNT),
        ),
        lambda v, _p: PeakEwma(**v),
    ),
    "random": _Policy((), lambda v, _p: Random()),
    "ring_hash": _RING_HASH,
    "ring_hash_experimental": _RING_HASH,
    "outlier_detection": _OUTLIER_DETECTION,
    "outlier_detection_experimental": _OUTLIER_DETECTION,
}

#: The policy names accepted in ``loadBalancingConfig``, aliases included.
SUPPORTED_POLICIES: tuple[str, ...] = tuple(_POLICIES)


def _select(value: object, path: str, *, child_of: str | None = None) -> BalancingChoice:
    """The first supported entry of ``loadBalancingConfig`` (or of the ``childPolicy`` of
    the policy ``child_of``); unknown names are skipped.

    As in gRPC, entries are looked at in order up to the first supported one, whose config
    must be valid; entries after it are not looked at.
    """
    supported = [name for name, row in _POLICIES.items() if not (child_of and row.wraps)]
    entries = expect_array(value, path, 'an array of {"policy_name": {config}} objects')
    seen: list[str] = []
    for position, entry in enumerate(entries):
        entry_path = f"{path}[{position}]"
        obj = expect_object(entry, entry_path, "an object with one policy name as its key")
        if len(obj) != 1:
            found = ", ".join(repr(key) for key in obj) or "no keys"
            raise ConfigError(
                entry_path, f"expected an object with exactly one policy name, found {found}"
            )
        ((name, config),) = obj.items()
        policy = _POLICIES.get(name)
        if policy is None:
            seen.append(name)
            continue
        policy_path = child(entry_path, name)
        if child_of is not None and policy.wraps:
            raise ConfigError(
                policy_path,
                f"expected a child policy for {child_of}, found {name}: one {child_of} "
                "cannot wrap another; give all its settings in one",
            )
        values = read_fields(config, policy_path, policy.fields, f"the {name} config")
        return policy.choose(values, policy_path)
    hints = "".join(did_you_mean(name, supported) for name in seen)
    found = ", ".join(repr(name) for name in seen) or "an empty array"
    raise ConfigError(
        path,
        f"expected at least one supported policy ({', '.join(supported)}), found {found}.{hints}",
    )


def _load_balancing_policy(value: object, path: str) -> BalancingChoice:
    """The deprecated ``"loadBalancingPolicy": "round_robin"`` form (any case)."""
    plain = [name for name, policy in _POLICIES.items() if not policy.needs_config]
    expected = f"one of {', '.join(plain)}"
    if not isinstance(value, str):
        raise mismatch(path, f"a policy name, {expected}", value)
    name = value.lower()
    policy = _POLICIES.get(name)
    if policy is None:
        raise ConfigError(
            path, f"expected {expected}, found {describe(value)}." + did_you_mean(name, plain)
        )
    if policy.needs_config:
        raise ConfigError(
            path,
            f"expected {expected}, found {describe(value)}; {name} needs a config, so give "
            f'it in loadBalancingConfig: [{{"{name}": {{...}}}}]',
        )
    return policy.choose({}, path)


#: The kinds of the service config's ``loadBalancingConfig`` and ``loadBalancingPolicy``.
load_balancing_config_kind = Kind("an array of policies", _select)
load_balancing_policy_kind = Kind("a policy name", _load_balancing_policy)
