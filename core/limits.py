"""Voltage limits by voltage class, GB/T 12325-2008 (docs/definitions.md, README: Definitions).

- 35 kV and above: configured per account, |upper| + |lower| <= 10 % (default +7 / -3 %).
- below 35 kV, three-phase: +/-7 %.
- 220 V single-phase: +7 / -10 %.
"""

from __future__ import annotations

from dataclasses import dataclass

HV_THRESHOLD_KV = 35.0
HV_SUM_LIMIT_PCT = 10.0


@dataclass(frozen=True)
class Limits:
    upper_pct: float
    lower_pct: float

    def band(self, nominal: float) -> tuple[float, float]:
        """(lower, upper) in the nominal's units."""
        return nominal * (1 - self.lower_pct / 100), nominal * (1 + self.upper_pct / 100)


def default_limits(voltage_class_kv: float, phases: int) -> Limits:
    if voltage_class_kv >= HV_THRESHOLD_KV:
        return Limits(7.0, 3.0)
    if phases == 1:
        return Limits(7.0, 10.0)
    return Limits(7.0, 7.0)


def validate_limits(
    voltage_class_kv: float, phases: int, upper_pct: float | None, lower_pct: float | None
) -> Limits:
    """The limits an account is judged by; raises ValueError for a configuration GB/T 12325 forbids."""
    default = default_limits(voltage_class_kv, phases)
    limits = Limits(
        default.upper_pct if upper_pct is None else abs(upper_pct),
        default.lower_pct if lower_pct is None else abs(lower_pct),
    )
    if voltage_class_kv >= HV_THRESHOLD_KV and limits.upper_pct + limits.lower_pct > HV_SUM_LIMIT_PCT + 1e-9:
        raise ValueError(
            f"at {voltage_class_kv:g} kV GB/T 12325 allows |upper| + |lower| <= 10 %, "
            f"got +{limits.upper_pct:g} / -{limits.lower_pct:g}"
        )
    return limits
