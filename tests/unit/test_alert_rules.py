"""The pure parts of the voltage and silence rules: tail decisions and per-class/per-site thresholds."""

import numpy as np
import pytest

from analysis.alerts.voltage import ConditionRule, parse_rules, rule_for, tail_decision
from core.errors import ConfigError
from core.registry import Site

RULE = ConditionRule(fire_min=5, clear_min=10)


def minutes(flags: str) -> tuple[np.ndarray, np.ndarray]:
    """'o' outside, '.' inside; minute k at k * 60 s."""
    out = np.array([c == "o" for c in flags])
    return np.arange(len(flags), dtype=np.int64) * 60_000, out


def test_five_minutes_outside_fire_and_the_start_is_where_the_run_began():
    assert tail_decision(*minutes("....oooo"), False, RULE) is None
    assert tail_decision(*minutes("...ooooooo"), False, RULE) == ("fire", 3 * 60_000)


def test_a_firing_alert_clears_only_after_ten_minutes_inside():
    assert tail_decision(*minutes("ooooo" + "." * 9), True, RULE) is None
    assert tail_decision(*minutes("ooooo" + "." * 12), True, RULE) == ("clear", 5 * 60_000)


def test_a_firing_alert_does_not_fire_again_and_a_quiet_one_does_not_clear():
    assert tail_decision(*minutes("oooooooooo"), True, RULE) is None
    assert tail_decision(*minutes(".........."), False, RULE) is None


def site(site_id: str, kv: float) -> Site:
    return Site(site_id, "account", site_id, kv, 3, None, None, "gb", None, None)


def test_thresholds_come_from_the_site_then_its_voltage_class_then_the_defaults():
    base, overrides = parse_rules(
        {"fire_min": 3, "class": {"10": {"fire_min": 8}}, "site": {"A1": {"clear_min": 2}}}, "test"
    )
    assert base == ConditionRule(fire_min=3, clear_min=10)
    assert rule_for(site("X", 0.38), base, overrides) == base
    assert rule_for(site("X", 10), base, overrides).fire_min == 8
    assert rule_for(site("A1", 10), base, overrides) == ConditionRule(fire_min=8, clear_min=2)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"fire_min": 0}, "fire_min must be a positive number"),
        ({"fire": 3}, "fire is not a setting"),
        ({"site": {"A1": {"clear": 2}}}, r"\[rules.site.A1\] clear"),
    ],
)
def test_bad_rule_settings_are_refused_naming_the_field(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_rules(raw, "test")
