"""bench/bench_attribution.py's Captum ladder: the fewest n_steps at which Captum's own deltas put
every target within its tolerance, on a ladder that holds Captum's default 50 and rungs below it."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    path = ROOT / "bench" / "bench_attribution.py"
    spec = importlib.util.spec_from_file_location("bench_attribution", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_deltas(clears_at: dict):
    """Each target's delta: 1.0 below its rung, 0.0 from it on."""
    calls = []

    def deltas_at(n, targets):
        calls.append((n, list(targets)))
        return [0.0 if n >= clears_at[t] else 1.0 for t in targets]

    return deltas_at, calls


def test_the_ladder_starts_below_captums_default_and_holds_it(bench):
    assert bench.CAPTUM_LADDER[0] < 50 and 50 in bench.CAPTUM_LADDER


def test_the_answer_is_the_rung_that_clears_the_last_miss_not_the_next(bench):
    positions = [1, 2, 3]
    deltas_at, calls = fake_deltas({1: 8, 2: 24, 3: 50})
    assert bench.fewest_captum_steps(positions, dict.fromkeys(positions, 0.5), deltas_at) == 50
    assert [n for n, _ in calls] == [8, 16, 24, 32, 50, 50]  # the last call confirms on every target
    assert calls[-1] == (50, positions)


def test_a_target_that_misses_again_higher_up_keeps_the_climb_going(bench):
    positions = [1, 2]

    def deltas_at(n, targets):  # target 1 is within at 8 but not at 16 (quadrature noise)
        return [0.0 if (t == 1 and n != 16) or (t == 2 and n >= 16) else 1.0 for t in targets]

    assert bench.fewest_captum_steps(positions, dict.fromkeys(positions, 0.5), deltas_at) == 24


def test_no_rung_reaches_it(bench):
    deltas_at, _ = fake_deltas({1: 10**6})
    assert bench.fewest_captum_steps([1], {1: 0.5}, deltas_at) is None
