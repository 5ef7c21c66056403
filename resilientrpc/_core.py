"""What a channel is made of before any driver starts it: the one place both twins
validate their arguments and build their engine.

Everything here is checked and built without starting anything, so a bad value raises
one :class:`~resilientrpc.errors.ConfigError` and leaves nothing behind; both channels
therefore reject exactly the same inputs with exactly the same errors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from resilientrpc.balancer import Balancer
from resilientrpc.config import ServiceConfig, check_weights_match_targets, parse_service_config
from resilientrpc.endpoint import FAILURE_CODES
from resilientrpc.options import ChannelOptions
from resilientrpc.strategies import build_strategy
from resilientrpc.targets import Target, parse_targets

__all__ = ["ChannelCore"]


@dataclass(frozen=True, slots=True)
class ChannelCore:
    """A channel's validated configuration and its (not yet started) balancer."""

    config: ServiceConfig
    target: Target
    options: ChannelOptions
    balancer: Balancer

    @classmethod
    def build(
        cls,
        targets: Sequence[str] | str,
        *,
        config: Any,
        credentials: grpc.ChannelCredentials | None,
        options: Sequence[tuple[str, Any]] | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> ChannelCore:
        service_config = parse_service_config(config)
        target = parse_targets(targets)
        if not target.is_dns:  # a dns:/// target's addresses are known only once resolved
            check_weights_match_targets(service_config.load_balancing, target.addresses)
        channel_options = ChannelOptions.build(options, credentials)
        strategy = build_strategy(service_config.load_balancing, clock=clock)
        outliers = service_config.effective_outlier_detection
        codes = None if outliers is None else outliers.failure_status_codes
        balancer = Balancer(
            strategy,
            clock=clock,
            panic_threshold=service_config.common_lb.healthy_panic_threshold,
            slow_start_window=service_config.common_lb.slow_start_window,
            failure_codes=FAILURE_CODES if codes is None else codes,
            health_checked=service_config.health_check is not None,
        )
        return cls(service_config, target, channel_options, balancer)

    @property
    def uses_load_reports(self) -> bool:
        return self.balancer.strategy.uses_load_reports
