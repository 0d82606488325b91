"""What a source runner is: a source model ready to run beside its converted Caffe net.

The converters' runners implement these (converters/*/runner.py, mxnet/cards.py, traced/);
the validation engine (caffezoo/validation/) is handed one by the commands and runs it. Both
import this module, so neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from caffezoo.card_plan import Plan
from caffezoo.contract import InputContract


@dataclass
class SourceRun:
    """What a card runner's run() returns."""

    logits: np.ndarray  # (N, classes): the classifier's output
    records: dict[str, tuple[np.ndarray, np.ndarray]]  # module -> (input, output)


class CardRunner(Protocol):
    """A card source ready to run: its plan names the modules `run` can record."""

    plan: Plan
    input_norm: InputContract  # what run() expects
    effective_norm: InputContract  # what the first convolution sees

    def run(self, x: np.ndarray, record: set[str] | None = None) -> SourceRun: ...


class GraphRunner(Protocol):
    """A graph source ready to run; `record` names graph values to return besides outputs."""

    input_shape: tuple[int, ...]
    input_norm: InputContract | None  # how images become its input; None: unknown

    def run(self, x: np.ndarray, record: set[str] | None = None) -> dict[str, np.ndarray]: ...
