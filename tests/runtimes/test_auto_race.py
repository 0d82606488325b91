"""The rule of `--backend auto`'s race (runtimes/auto.py, step 3) under a changing load.

These tests run the race on fake runtimes whose passes cost known amounts of time on a fake
clock: what is tested is the rule (rounds, their order, the best pass wins), which real
runtimes on a shared machine cannot show deterministically. The real probe is tested in
test_auto.py."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from caffezoo.runtimes import auto

SHAPE = (1, 3, 4, 4)


class Machine:
    """A fake clock and what slows a pass: `slow(name, previous)` -> factor (previous: the
    runtime that ran the pass before)."""

    def __init__(self, slow) -> None:
        self.now, self.previous, self.slow, self.passes = 0.0, None, slow, []

    def clock(self) -> float:
        return self.now


class FakeRuntime:
    def __init__(self, machine: Machine, name: str, seconds: float) -> None:
        self.machine, self.name, self.seconds = machine, name, seconds
        self.checked = SimpleNamespace(analysis=SimpleNamespace(outputs=["prob"], results=[]))

    def forward(self, x, names):
        m = self.machine
        m.now += self.seconds * m.slow(self.name, m.previous)
        m.passes.append(self.name)
        m.previous = self.name
        return {}


def race(costs: dict[str, float], slow) -> tuple[str, Machine]:
    machine = Machine(slow)
    runtimes = {name: FakeRuntime(machine, name, s) for name, s in costs.items()}
    ms = auto._race(runtimes, 1, SHAPE, clock=machine.clock)
    return min(ms, key=ms.get), machine


def test_what_a_runtime_leaves_running_cannot_decide():
    """onnxruntime (10 ms) is faster than openvino (11 ms), but openvino leaves threads
    spinning that slow the next pass by half. In a fixed order onnxruntime always follows
    openvino and loses; each round starting one further on, it also follows itself."""
    def slow(name, previous):
        return 1.5 if previous == "openvino" else 1.0

    winner, machine = race({"onnxruntime": 0.010, "openvino": 0.011}, slow)
    assert winner == "onnxruntime"
    rounds = [machine.passes[i:i + 2] for i in range(2, len(machine.passes), 2)]
    assert rounds[:3] == [["onnxruntime", "openvino"], ["openvino", "onnxruntime"],
                          ["onnxruntime", "openvino"]]


def test_bursts_of_load_on_short_passes_cannot_decide(monkeypatch):
    """Each pass is slowed 3x with probability 1/2 (another process's bursts), seeded. With
    ROUNDS rounds only (three samples of each candidate), the slower candidates win under
    some seeds (asserted, so that the scenario is a real test); rounds going on while the
    passes add up to less than RACE_S give enough samples for the fastest to win under
    every seed."""
    costs = {"onnxruntime": 0.010, "openvino": 0.0115, "torch": 0.012}

    def bursts(seed):
        rng = random.Random(seed)
        return lambda name, previous: 3.0 if rng.random() < 0.5 else 1.0

    wins = [race(costs, bursts(seed))[0] for seed in range(50)]
    assert wins == ["onnxruntime"] * 50
    monkeypatch.setattr(auto, "MAX_ROUNDS", auto.ROUNDS)
    few = [race(costs, bursts(seed))[0] for seed in range(50)]
    assert few.count("onnxruntime") < 50


def test_the_race_is_bounded():
    """Short passes: at most MAX_ROUNDS rounds. Long passes (a round longer than RACE_S):
    ROUNDS rounds, not more."""
    _, short = race({"a": 0.001, "b": 0.001}, lambda n, p: 1.0)
    assert len(short.passes) == 2 + 2 * auto.MAX_ROUNDS  # warm-up, then the rounds
    _, long = race({"a": 0.6, "b": 0.7}, lambda n, p: 1.0)
    assert long.passes.count("a") == long.passes.count("b") == 1 + auto.ROUNDS
    assert long.now == pytest.approx((0.6 + 0.7) * (1 + auto.ROUNDS))


def test_the_estimate_keeps_the_best_pass():
    """A candidate whose one estimate pass met a burst of load is not skipped for it: the
    estimate is the best of ESTIMATE_PASSES passes."""
    seen = iter([3.0, 1.0] + [1.0] * 10)
    machine = Machine(lambda n, p: next(seen))
    runtimes = {"onnxruntime": FakeRuntime(machine, "onnxruntime", 0.010),
                "openvino": FakeRuntime(machine, "openvino", 0.011)}
    ms = auto._estimate(runtimes, None, clock=machine.clock)
    assert ms == {"onnxruntime": pytest.approx(10.0), "openvino": pytest.approx(11.0)}
