"""The cosine learning-rate schedule on the handout's worked table."""

from __future__ import annotations

import pytest

from cs336 import lr_cosine_schedule

# max_lr=1, min_lr=0.1, warmup_iters=7, cosine_cycle_iters=21, it = 0..24 (CS336's test table)
EXPECTED = [
    0,
    0.14285714285714285,
    0.2857142857142857,
    0.42857142857142855,
    0.5714285714285714,
    0.7142857142857143,
    0.8571428571428571,
    1.0,
    0.9887175604818206,
    0.9554359905560885,
    0.9018241671106134,
    0.8305704108364301,
    0.7452476826029011,
    0.6501344202803414,
    0.5499999999999999,
    0.44986557971965857,
    0.3547523173970989,
    0.26942958916356996,
    0.19817583288938662,
    0.14456400944391146,
    0.11128243951817937,
    0.1,
    0.1,
    0.1,
    0.1,
]


def test_worked_table():
    got = [lr_cosine_schedule(it, 1.0, 0.1, 7, 21) for it in range(25)]
    assert got == pytest.approx(EXPECTED, abs=1e-12)


def test_edges_without_warmup_or_cosine_phase():
    assert lr_cosine_schedule(0, 1.0, 0.1, 0, 10) == 1.0  # no warmup: starts at max
    assert lr_cosine_schedule(5, 1.0, 0.1, 5, 5) == 1.0  # no cosine phase
    assert lr_cosine_schedule(6, 1.0, 0.1, 5, 5) == 0.1
    assert lr_cosine_schedule(10**9, 3e-4, 3e-5, 100, 1000) == 3e-5


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((-1, 1.0, 0.1, 7, 21), r"iteration \(-1\) must be >= 0"),
        ((0, 1.0, 0.1, -2, 21), r"warmup_iters \(-2\) must be >= 0"),
        ((0, 1.0, 0.1, 50, 40), r"cosine_cycle_iters \(40\) must be >= warmup_iters \(50\)"),
    ],
)
def test_rejects_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        lr_cosine_schedule(*args)
