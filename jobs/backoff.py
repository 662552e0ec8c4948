"""Retry delay policy as a pure function (easy to test, same everywhere)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """delay(attempt) = min(base * 2**(attempt-1), max) seconds, spread by ±jitter (a fraction)."""

    base: float = 2.0
    max: float = 3600.0
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if self.base < 0 or self.max < 0:
            raise ValueError("backoff base and max must be >= 0")
        if not 0 <= self.jitter <= 1:
            raise ValueError("backoff jitter must be between 0 and 1")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        exponent = max(attempt - 1, 0)
        raw = min(self.base * (2 ** min(exponent, 62)), self.max)
        if self.jitter:
            spread = raw * self.jitter
            raw += (rng or random).uniform(-spread, spread)
        return max(raw, 0.0)

    def as_dict(self) -> dict[str, float]:
        return {"base": self.base, "max": self.max, "jitter": self.jitter}
