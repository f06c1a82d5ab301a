"""The chaos suite's verdict: a run passes when nothing broke and its poison was quarantined."""

from __future__ import annotations

from typing import Any

import pytest

from bench.chaos import Result


def _report(violations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "events": {"emitted": 10, "waiting": 0, "in_flight": 0},
        "orders": {"unfinished": 0},
        "effects": {"vtex.start_handling": 3, "erp.import": 3, "erp.picked": 2},
        "violations": violations or [],
    }


def _result(poison: str | None = None, **report: Any) -> Result:
    return Result("kill-children", 1, 3, True, 12.0, _report(**report), [], 1, poison)


@pytest.mark.parametrize("poison", [None, "quarantined"])
def test_a_clean_run_passes(poison: str | None) -> None:
    assert _result(poison).ok


@pytest.mark.parametrize("poison", ["not quarantined", "pending"])
def test_a_poison_that_never_reached_quarantine_fails_the_run(poison: str) -> None:
    result = _result(poison)
    assert not result.ok
    assert f"poison={poison.replace(' ', '-')}" in result.line()


def test_a_repeated_effect_counts_as_duplicated_and_fails() -> None:
    result = _result(violations=[{"rule": "effect-repeated"}, {"rule": "cancel-after-ship"}])
    assert not result.ok
    assert (result.duplicated, result.forbidden) == (1, 1)
    assert result.effects == 6  # the ERP's own progress is not the bridge's effect
