"""Supply reliability per account, DL/T 836 (docs/definitions.md).

For one key account (N = 1): AIHC = summed outage hours, RS-1 = (1 - AIHC / PH) x 100.
DL/T 836-2016 keeps variants with and without short interruptions; pqmon reports both.
"""

from __future__ import annotations


def rs1_pct(outage_s: float, period_s: float) -> float | None:
    """RS-1 in %, or None for an empty period."""
    if period_s <= 0:
        return None
    return (1.0 - outage_s / period_s) * 100.0


def rs_system_pct(user_hours: float, users: int, period_h: float) -> float:
    """RS-n for N users: (1 - (sum t_i n_i / N) / PH) x 100."""
    return (1.0 - (user_hours / users) / period_h) * 100.0
