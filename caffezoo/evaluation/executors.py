"""Executors for evaluation: in-process (`local`, the default) and Ray (`ray_executor`), both
writing the same per-image record (`record.py`); the Runtime interface does not change for them.

An evaluation is split into work units of `unit_size` consecutive images of the list. Every unit
is scored from its first crop in fresh batches, whichever executor runs it and whether or not
the run was resumed: some backends give scores that depend on the other crops of a batch in the
last bits (torch, measured), so fixing the batches by unit makes a Ray run, a resumed run and an
uninterrupted one agree bit for bit, not only in their counts. A resumed run redoes the unit it
was in the middle of (its recorded images are kept, not counted twice).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from caffezoo.evaluation.classify import EvalConfig, EvalResult, Failure, Prediction, evaluate
from caffezoo.evaluation.dataset import Sample
from caffezoo.evaluation.record import Entry, Record

EXECUTORS = ("local", "ray")
DEFAULT_UNIT = 64  # images per work unit: seconds of work at 1-crop, a retry costs little


@dataclass
class EvalJob:
    """One evaluation (one net at one crop scheme) as an executor sees it."""

    prototxt: Path          # the file opened (a zoo card's generated net, or the user's)
    weights: Path
    backend: str            # resolved (not "auto")
    threads: int | None     # per runtime; None: the library's default
    config: EvalConfig
    samples: list[Sample]   # labels already mapped to the net's indices
    unit_size: int = DEFAULT_UNIT

    def units(self) -> list[range]:
        n, u = len(self.samples), self.unit_size
        return [range(start, min(start + u, n)) for start in range(0, n, u)]

    def pending_units(self, record: Record) -> list[range]:
        """The units with an image not in the record yet, in list order."""
        return [u for u in self.units() if any(i not in record.entries for i in u)]


@dataclass
class WorkerState:
    """What the progress line shows per worker."""

    name: str
    images: int = 0
    busy_s: float = 0.0
    restarts: int = 0
    pid: int | None = None
    where: str = ""

    @property
    def rate(self) -> float:
        return self.images / self.busy_s if self.busy_s > 0 else 0.0


@dataclass
class SessionStats:
    """This session's work (a resumed run's earlier sessions are in the record)."""

    executor: str = "local"
    workers: list[WorkerState] = field(default_factory=list)
    wall_s: float = 0.0
    forward_s: float = 0.0
    forward_calls: int = 0
    crops: int = 0
    address: str | None = None  # Ray: the cluster connected to


# -- the fingerprint ----------------------------------------------------------------------


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def list_digest(samples: Sequence[Sample]) -> str:
    """The list as evaluated: names as written and labels as mapped, in order (not the data
    root, so a dataset moved to another disk still resumes)."""
    h = hashlib.sha256()
    for s in samples:
        h.update(f"{s.name}\t{s.label}\n".encode("utf-8", "surrogateescape"))
    return "sha256:" + h.hexdigest()


def describe(settings) -> object:
    """A JSON-ready view of a settings object (whatever type the loop is given)."""
    if dataclasses.is_dataclass(settings) and not isinstance(settings, type):
        return {f.name: describe(getattr(settings, f.name))
                for f in dataclasses.fields(settings)}
    if isinstance(settings, tuple | list):
        return [describe(v) for v in settings]
    if isinstance(settings, dict):
        return {str(k): describe(v) for k, v in settings.items()}
    return settings if isinstance(settings, int | float | str | bool | None) else repr(settings)


# The contract's fields that decide the crops (labels and outputs do not; the labels as mapped
# are in the list's digest).
PIPELINE_FIELDS = ("channel_order", "pixel_scale", "mean", "std", "input_size", "resize_size",
                   "interpolation", "resize", "crop")


def pipeline_fingerprint(pipeline) -> dict[str, object]:
    """The input contract's values that decide the crops, and the crop scheme."""
    values = pipeline.contract.to_dict()
    contract = {k: values[k] for k in PIPELINE_FIELDS}
    return {"contract": describe(contract), "crop_num": pipeline.crop_num,
            "scales": list(pipeline.scales)}


def fingerprint(job: EvalJob) -> dict[str, object]:
    """What a resume must find unchanged, by name (the names appear in its refusal). Threads,
    batch and unit size are in because some backends' last bits depend on them (measured:
    pycaffe on the thread count, torch on the batch)."""
    c = job.config
    return {
        "model weights": file_digest(job.weights),
        "model prototxt": file_digest(job.prototxt),
        "val list": list_digest(job.samples),
        "images": len(job.samples),
        "preprocessing": pipeline_fingerprint(c.pipeline),
        "output blob": c.output_blob,
        "softmax": c.softmax,
        "top-k": list(c.top_k),
        "on error": c.on_error,
        "backend": job.backend,
        "threads": job.threads,
        "batch size": c.batch_size,
        "unit size": job.unit_size,
    }


# -- entries and the running tally --------------------------------------------------------


def to_entry(index: int, item: Prediction | Failure) -> Entry:
    if isinstance(item, Failure):
        return Entry(index, error=item.reason)
    return Entry(index, tuple(item.top), tuple(item.scores))


class Tally:
    """Counts over the record's entries as they arrive (progress notes, --verbose lines), and
    the final EvalResult in list order."""

    def __init__(self, job: EvalJob, record: Record) -> None:
        self.job = job
        self.result = EvalResult(listed=len(job.samples), top_k=tuple(job.config.top_k))
        self.result.correct = {k: 0 for k in job.config.top_k}
        self.resumed = len(record.entries)
        for index in sorted(record.entries):
            self.add(record.entries[index])

    def add(self, entry: Entry) -> Prediction | Failure:
        sample = self.job.samples[entry.index]
        if entry.error is not None:
            failure = Failure(sample, entry.error)
            self.result.failures.append(failure)
            return failure
        pred = Prediction(sample, list(entry.top), list(entry.scores))
        self.result.predictions.append(pred)
        for k in self.result.top_k:
            self.result.correct[k] += pred.correct(k)
        return pred

    @property
    def done(self) -> int:
        return len(self.result.predictions) + len(self.result.failures)

    def final(self, record: Record, session: SessionStats) -> EvalResult:
        r = self.result
        r.predictions.sort(key=lambda p: p.sample.line)
        r.failures.sort(key=lambda f: f.sample.line)
        r.wall_s = sum(record.earlier_wall_s) + session.wall_s
        r.forward_s, r.forward_calls, r.crops = (session.forward_s, session.forward_calls,
                                                 session.crops)
        return r


# -- in-process ---------------------------------------------------------------------------


def run_local(job: EvalJob, runtime, record: Record,
              on_new: Callable[[list[Entry]], None]) -> SessionStats:
    """Evaluates the record's missing units on `runtime` in this process; `on_new` gets each
    image's entry once it is recorded."""
    units = job.pending_units(record)
    stats = SessionStats("local", [WorkerState("local")])
    if not units:
        return stats
    pending = [i for u in units for i in u]
    starts, position = [], 0
    for u in units:
        starts.append(position)
        position += len(u)
    index_of = {job.samples[i]: i for i in pending}
    record.start_session("local", 1)

    def on_image(item, _result) -> None:
        new = record.add([to_entry(index_of[item.sample], item)])
        if new:
            on_new(new)

    r = evaluate(runtime, [job.samples[i] for i in pending], job.config, on_image=on_image,
                 unit_starts=starts)
    stats.wall_s = record.elapsed()
    stats.forward_s, stats.forward_calls, stats.crops = r.forward_s, r.forward_calls, r.crops
    worker = stats.workers[0]
    worker.images, worker.busy_s = r.evaluated + len(r.failures), r.wall_s
    return stats

