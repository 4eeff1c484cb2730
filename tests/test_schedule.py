"""The learning-rate schedules (cs336.optim.schedule): the handout's cosine on its worked
table, and lr_schedule's cosine (in steps or seconds) and warmup-stable-decay."""

from __future__ import annotations

import pytest

from cs336 import lr_cosine_schedule
from cs336.optim.schedule import lr_schedule

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


@pytest.mark.parametrize("t", [0, 3, 7, 10, 15.5, 30, 31, 40])
def test_lr_schedule_cosine_is_the_handouts_and_takes_seconds_too(t):
    kw = dict(max_lr=1.0, min_lr=0.1, warmup=7, total=30)
    assert lr_schedule(t, **kw) == lr_cosine_schedule(t, 1.0, 0.1, 7, 30)


def test_lr_schedule_wsd_warms_up_holds_then_decays_linearly_to_min_lr():
    kw = dict(max_lr=2.0, min_lr=0.2, warmup=10, total=110, kind="wsd", cooldown=0.25)
    # warmup over [0, 10), stable until 110 - 0.25 * 100 = 85, linear to 0.2 at 110
    assert [lr_schedule(t, **kw) for t in (0, 5, 10, 50, 85)] == [0.0, 1.0, 2.0, 2.0, 2.0]
    assert lr_schedule(97.5, **kw) == pytest.approx(1.1)
    assert lr_schedule(110, **kw) == lr_schedule(500, **kw) == 0.2
    with pytest.raises(ValueError, match="schedule must be one of cosine, wsd"):
        lr_schedule(1, **{**kw, "kind": "linear"})
    with pytest.raises(ValueError, match="cooldown"):
        lr_schedule(1, **{**kw, "cooldown": 1.5})
