"""The chaos suite's short version: four scenarios at 100 orders on the real stack.

The full suite (every scenario, 500 orders, several seeds) is ``python bench/chaos.py --scenario
all --seeds 1,2,3``; this keeps the four that catch the most in CI's time.
"""

from __future__ import annotations

import pytest

from bench.chaos import CI_SCENARIOS, SCENARIOS, run

ORDERS = 100


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", CI_SCENARIOS)
def test_the_pipeline_loses_nothing_and_doubles_nothing_under(name: str) -> None:
    result = run(SCENARIOS[name], seed=7, orders=ORDERS)
    print(result.line())
    assert result.report["violations"] == [], result.line()
    assert result.settled, result.line()
    assert result.lost == 0 and result.duplicated == 0 and result.forbidden == 0
    if SCENARIOS[name].monkeys:
        assert result.chaos, "the scenario's faults never fired"
