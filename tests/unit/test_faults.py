"""Fault plans: spec parsing, precedence, decisions and JSON round trips."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from sandbox.faults import (
    ALL_ENDPOINTS,
    ERP_ENDPOINTS,
    VTEX_ENDPOINTS,
    FaultDecision,
    FaultPlan,
    FaultRule,
)

EXAMPLE = (
    "vtex:429=5%,500=2%,retry-after=1;get_order:latency=20ms,jitter=10ms;"
    "erp:drop=1%;feed_get:malformed=3%"
)


def test_endpoint_names() -> None:
    assert set(VTEX_ENDPOINTS) == {
        "feed_get",
        "feed_commit",
        "feed_config",
        "get_order",
        "list_orders",
        "start_handling",
        "cancel",
        "deny",
        "invoice",
        "tracking",
        "hook_config",
    }
    assert set(ERP_ENDPOINTS) == {
        "erp_import",
        "erp_get",
        "erp_cancel",
        "erp_hold",
        "erp_release",
        "erp_packed",
        "erp_invoice",
    }
    assert len(ALL_ENDPOINTS) == len(set(ALL_ENDPOINTS)) == 18


def test_empty_spec_means_no_faults() -> None:
    for spec in ("", "   ", ";", " ; ; "):
        plan = FaultPlan.parse(spec)
        assert not plan.active
        assert plan == FaultPlan()
        assert all(plan.rule_for(e) == FaultRule() for e in ALL_ENDPOINTS)
    decision = FaultPlan().decide("get_order", random.Random(1))
    assert decision == FaultDecision(0.0, None, None, False)


def test_parse_example() -> None:
    plan = FaultPlan.parse(EXAMPLE)
    assert plan.rule_for("cancel") == FaultRule(p429=0.05, p500=0.02, retry_after=1.0)
    # get_order layers its own latency over the settings of its group
    assert plan.rule_for("get_order") == FaultRule(
        latency_ms=20.0, jitter_ms=10.0, p429=0.05, p500=0.02, retry_after=1.0
    )
    assert plan.rule_for("feed_get").p_malformed == pytest.approx(0.03)
    assert plan.rule_for("erp_import") == FaultRule(p_drop=0.01)
    assert plan.rule_for("erp_invoice").p429 == 0.0


def test_parse_units_and_whitespace() -> None:
    plan = FaultPlan.parse(
        " get_order : latency = 0.2s , jitter = 15 ; deny:latency=7.5ms,retry-after=500ms ;"
        "cancel:429=0.25,retry_after=2s"
    )
    assert plan.rule_for("get_order").latency_ms == pytest.approx(200.0)
    assert plan.rule_for("get_order").jitter_ms == pytest.approx(15.0)
    assert plan.rule_for("deny").latency_ms == pytest.approx(7.5)
    assert plan.rule_for("deny").retry_after == pytest.approx(0.5)
    assert plan.rule_for("cancel").p429 == pytest.approx(0.25)
    assert plan.rule_for("cancel").retry_after == pytest.approx(2.0)
    assert FaultPlan.parse("*:500=100%").rule_for("erp_get").p500 == 1.0
    assert FaultPlan.parse("*:503=0").rule_for("erp_get").p503 == 0.0


def test_repeated_target_accumulates() -> None:
    plan = FaultPlan.parse("vtex:429=5%;vtex:500=1%;vtex:429=10%")
    assert plan.rule_for("invoice") == FaultRule(p429=0.10, p500=0.01)


def test_precedence_endpoint_over_group_over_star() -> None:
    plan = FaultPlan.parse("*:latency=1,500=1%;vtex:latency=2;get_order:latency=3,500=0")
    assert plan.rule_for("get_order") == FaultRule(latency_ms=3.0, p500=0.0)
    assert plan.rule_for("cancel") == FaultRule(latency_ms=2.0, p500=0.01)
    assert plan.rule_for("erp_hold") == FaultRule(latency_ms=1.0, p500=0.01)


def test_full_rule_replaces_less_specific_settings() -> None:
    plan = FaultPlan({"vtex": {"p429": 0.5}, "cancel": FaultRule(latency_ms=4)})
    assert plan.rule_for("cancel") == FaultRule(latency_ms=4)
    assert plan.rule_for("deny") == FaultRule(p429=0.5)


def test_rule_for_unknown_endpoint() -> None:
    with pytest.raises(ValueError, match="unknown endpoint 'nope'"):
        FaultPlan().rule_for("nope")
    with pytest.raises(ValueError, match="unknown endpoint"):
        FaultPlan().decide("vtex", random.Random(0))


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        ("shop:429=5%", ["'shop:429=5%'", "unknown target 'shop'", "allowed targets", "vtex"]),
        ("vtex:404=5%", ["unknown key '404'", "allowed keys", "retry-after", "malformed"]),
        ("vtex:429", ["expected KEY=VALUE", "'429'"]),
        ("vtex", ["'vtex'", "expected TARGET:KEY=VALUE"]),
        ("vtex:", ["expected TARGET:KEY=VALUE"]),
        (":429=5%", ["expected TARGET:KEY=VALUE"]),
        ("vtex:429=five", ["bad value 'five' for 429", "5% or 0.05"]),
        ("vtex:429=", ["bad value '' for 429"]),
        ("vtex:429=nan", ["bad value 'nan'"]),
        ("get_order:latency=fast", ["bad value 'fast' for latency", "50ms"]),
        ("get_order:latency=-5ms", ["bad value '-5ms' for latency"]),
        ("get_order:latency=inf", ["bad value 'inf' for latency"]),
        ("vtex:retry-after=soon", ["bad value 'soon' for retry-after", "seconds"]),
        ("vtex:429=5", ["probability '5' for 429 is out of range", "0..1"]),
        ("vtex:500=101%", ["probability '101%' for 500 is out of range"]),
        ("vtex:drop=-1%", ["probability '-1%' for drop is out of range"]),
        ("vtex:429=60%,500=50%", ["add up to at most 100%"]),
    ],
)
def test_parse_errors(spec: str, fragments: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        FaultPlan.parse(spec)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message


def test_rule_validation() -> None:
    with pytest.raises(ValueError, match="probability"):
        FaultRule(p429=1.5)
    with pytest.raises(ValueError, match=">= 0"):
        FaultRule(latency_ms=-1)
    with pytest.raises(ValueError, match="number"):
        FaultRule(p500=True)


def test_decide_frequencies() -> None:
    plan = FaultPlan.parse("cancel:429=10%,500=5%,503=3%,drop=2%,retry-after=1.5")
    rng = random.Random(20240601)
    n = 100_000
    counts: Counter[str] = Counter()
    for _ in range(n):
        d = plan.decide("cancel", rng)
        assert d.delay == 0.0
        if d.status == 429:
            assert d.retry_after == 1.5
            assert not d.drop_after_effect
            counts["429"] += 1
        elif d.status is not None:
            assert d.retry_after is None
            assert not d.drop_after_effect
            counts[str(d.status)] += 1
        elif d.drop_after_effect:
            counts["drop"] += 1
        else:
            assert d.clean
            counts["ok"] += 1
    expected = {"429": 0.10, "500": 0.05, "503": 0.03, "drop": 0.02, "ok": 0.80}
    for key, share in expected.items():
        assert counts[key] / n == pytest.approx(share, abs=0.006), (key, counts)


def test_decide_is_reproducible_with_a_seed() -> None:
    plan = FaultPlan.parse(EXAMPLE)
    a = [plan.decide("get_order", random.Random(7)) for _ in range(3)]
    rng1, rng2 = random.Random(99), random.Random(99)
    b1 = [plan.decide("get_order", rng1) for _ in range(500)]
    b2 = [plan.decide("get_order", rng2) for _ in range(500)]
    assert a[0] == a[1] == a[2]
    assert b1 == b2


def test_decide_delay_latency_and_jitter() -> None:
    plan = FaultPlan.parse("get_order:latency=20ms,jitter=10ms;deny:latency=2,jitter=10")
    rng = random.Random(3)
    delays = [plan.decide("get_order", rng).delay for _ in range(20_000)]
    assert min(delays) >= 0.010
    assert max(delays) <= 0.030
    assert sum(delays) / len(delays) == pytest.approx(0.020, abs=0.0005)
    clamped = [plan.decide("deny", rng).delay for _ in range(20_000)]
    assert min(clamped) == 0.0
    assert max(clamped) <= 0.012
    zero_share = sum(1 for d in clamped if d == 0.0) / len(clamped)
    assert zero_share == pytest.approx(0.4, abs=0.02)  # uniform(-10, 10) < -2


def test_malformed_frequency() -> None:
    plan = FaultPlan.parse("feed_get:malformed=3%")
    rng = random.Random(5)
    hits = sum(plan.malformed(rng) for _ in range(100_000))
    assert hits / 100_000 == pytest.approx(0.03, abs=0.003)
    assert not any(FaultPlan.parse("vtex:500=1%").malformed(rng) for _ in range(1000))
    assert FaultPlan.parse("vtex:malformed=100%").malformed(rng)


def test_json_round_trip() -> None:
    plan = FaultPlan.parse(EXAMPLE)
    data = plan.to_json()
    assert data == {
        "rules": {
            "vtex": {"p429": 0.05, "p500": 0.02, "retry_after": 1.0},
            "get_order": {"latency_ms": 20.0, "jitter_ms": 10.0},
            "erp": {"p_drop": 0.01},
            "feed_get": {"p_malformed": 0.03},
        }
    }
    again = FaultPlan.from_json(data)
    assert again == plan
    for endpoint in ALL_ENDPOINTS:
        assert again.rule_for(endpoint) == plan.rule_for(endpoint)
    assert FaultPlan.from_json({"spec": EXAMPLE}) == plan
    assert FaultPlan.from_json({}) == FaultPlan()
    assert FaultPlan.parse(plan.to_spec()) == plan
    odd = FaultPlan.parse("deny:latency=0.1s,429=7%,retry-after=0.3")
    assert FaultPlan.parse(odd.to_spec()) == odd


def test_from_json_spec_and_rules_together() -> None:
    plan = FaultPlan.from_json(
        {"spec": "vtex:429=5%;erp:500=1%", "rules": {"vtex": {"latency_ms": 5}}}
    )
    assert plan.rule_for("cancel") == FaultRule(latency_ms=5)
    assert plan.rule_for("erp_get") == FaultRule(p500=0.01)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"rules": {"shop": {"p429": 0.1}}}, "unknown fault target 'shop'"),
        ({"rules": {"vtex": {"p404": 0.1}}}, "unknown setting 'p404'"),
        ({"rules": {"vtex": {"p429": 2}}}, "within 0..1"),
        ({"rules": {"vtex": {"p429": "5%"}}}, "must be a number"),
        ({"rules": {"vtex": 0.1}}, "must be an object"),
        ({"rules": []}, "must be an object"),
        ({"spec": 5}, "must be a string"),
        ({"spec": "vtex:429=200%"}, "out of range"),
        ({"faults": {}}, "unknown keys"),
    ],
)
def test_from_json_errors(data: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        FaultPlan.from_json(data)


def test_merged_overrides_same_target() -> None:
    base = FaultPlan.parse("vtex:429=5%,latency=3;erp:drop=1%")
    extra = FaultPlan.parse("vtex:500=2%;get_order:latency=9")
    merged = base.merged(extra)
    assert merged.rule_for("cancel") == FaultRule(p500=0.02)  # vtex replaced as a whole
    assert merged.rule_for("get_order") == FaultRule(p500=0.02, latency_ms=9)
    assert merged.rule_for("erp_get") == FaultRule(p_drop=0.01)
    assert base.rule_for("cancel") == FaultRule(p429=0.05, latency_ms=3)  # unchanged
    assert base.merged(FaultPlan()) == base
