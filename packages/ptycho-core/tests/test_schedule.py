"""The learning-rate schedule and early stop shared by every backend (ptycho_core.schedule, physics.md s5)."""

from __future__ import annotations

import json
import math

import pytest

from ptycho_core.schedule import PlateauSchedule

#: An epoch-loss sequence and the rate each epoch hands to the next one (patience 2, halve, floor 1e-4).
#: The backends' tests use the same pair: both must halve at the same epochs.
LOSSES = [10.0, 8.0, 8.0, 8.0, 7.9999, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0]
RATES = [1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 5e-4, 5e-4, 2.5e-4, 2.5e-4, 1.25e-4, 1.25e-4, 1e-4]


def test_plateau_halves_after_two_epochs_without_improvement_down_to_the_floor():
    schedule = PlateauSchedule(lr=1e-3)
    rates = [schedule.step(loss) for loss in LOSSES]
    assert rates == pytest.approx(RATES, rel=1e-12)
    assert not schedule.stop  # early stop is off by default


def test_an_improvement_below_the_relative_threshold_is_no_improvement():
    schedule = PlateauSchedule(lr=1e-3)
    schedule.step(100.0)
    schedule.step(100.0 * (1 - 0.5e-4))  # 0.005 % lower: noise, not progress
    assert schedule.wait == 1 and schedule.best == 100.0
    schedule.step(99.0)
    assert schedule.wait == 0 and schedule.best == 99.0


def test_early_stop_counts_epochs_without_improvement_across_rate_changes():
    schedule = PlateauSchedule(lr=1e-3, stop_patience=5)
    stops = [schedule.step(loss) and schedule.stop for loss in LOSSES]
    # epochs 7.. do not improve on 7.0 (epoch 6): the fifth of them is epoch 11
    assert stops.index(True) == 10


def test_state_round_trip_continues_the_same_schedule():
    whole = PlateauSchedule(lr=1e-3)
    first = PlateauSchedule(lr=1e-3)
    for loss in LOSSES[:5]:
        whole.step(loss)
        first.step(loss)
    state = json.loads(json.dumps(first.state()))  # checkpoints store it as JSON / plain numbers
    resumed = PlateauSchedule.from_state(state, lr=123.0)
    assert [resumed.step(x) for x in LOSSES[5:]] == [whole.step(x) for x in LOSSES[5:]]
    fresh = PlateauSchedule.from_state(None, lr=2e-3, stop_patience=3)
    assert fresh.lr == 2e-3 and fresh.best == math.inf and fresh.stop_patience == 3
    assert PlateauSchedule.from_state({}, lr=1e-3).state() == {"lr": 1e-3, "best": None, "wait": 0, "stale": 0}


def test_non_finite_loss_leaves_the_schedule_unchanged():
    schedule = PlateauSchedule(lr=1e-3)
    schedule.step(5.0)
    assert schedule.step(float("nan")) == 1e-3 and schedule.wait == 0 and schedule.best == 5.0
