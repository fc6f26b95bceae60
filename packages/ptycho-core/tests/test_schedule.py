"""The learning-rate schedule and early stop shared by every backend (ptycho_core.schedule, physics.md s5)."""

from __future__ import annotations

import json
import math
import time

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


def test_time_budget_stops_after_the_first_epoch_that_ends_past_it():
    now = [100.0]
    schedule = PlateauSchedule(lr=1e-3, stop_patience=0, max_seconds=30.0, clock=lambda: now[0])
    stops = []
    for loss in (10.0, 9.0, 8.0, 7.0):  # improving: only the budget can stop it
        now[0] += 12.0  # an epoch of 12 s
        schedule.step(loss)
        stops.append(schedule.stop)
    assert stops == [False, False, True, True]  # 24 s < 30 s after two epochs, 36 s after three
    assert schedule.stop_reason == "time budget"
    assert "time budget of 30 s reached (48 s" in schedule.stop_message(3)
    patience = PlateauSchedule(lr=1e-3, stop_patience=1, max_seconds=1e9)
    patience.step(5.0)
    patience.step(6.0)
    assert patience.stop and patience.stop_reason == "no improvement"
    assert patience.stop_message(2) == "early stop after epoch 2: no lower loss for 1 epochs"
    never = PlateauSchedule(lr=1e-3)
    assert not any(never.step(x) and never.stop for x in LOSSES) and never.stop_reason is None


def test_time_budget_of_a_resumed_schedule_counts_from_now():
    now = [0.0]
    resumed = PlateauSchedule.from_state({"lr": 5e-4, "best": 3.0, "wait": 0, "stale": 0}, lr=1e-3,
                                         max_seconds=10.0)
    assert resumed.max_seconds == 10.0 and resumed.lr == 5e-4 and resumed.best == 3.0
    assert 0.0 <= time.monotonic() - resumed.started < 5.0  # its clock starts at the restart, not in the state
    assert "started" not in resumed.state()
    clocked = PlateauSchedule(lr=1e-3, max_seconds=10.0, clock=lambda: now[0])
    now[0] = 9.0
    clocked.step(1.0)
    assert not clocked.stop
    now[0] = 10.0
    clocked.step(0.5)
    assert clocked.stop


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
