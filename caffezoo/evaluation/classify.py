"""The classification loop: decode and crop images in worker threads while the net runs real
batches, average each image's crop scores, and count top-k hits.

Why threads: OpenCV's decode/resize, numpy's arithmetic and OpenCV DNN's forward release the
GIL, so decoding threads run beside the forward pass without copying crops between processes
(144 crops of 224 x 224 are 87 MB per image). pycaffe's forward keeps the GIL, so with it the
decoders are processes (spawned; crops come back pickled).

Batches are filled with crops in list order and may span images; every crop's score row is
stored at its (image, crop) place and an image's rows are summed in crop order once all are in,
so the result does not depend on the batch size or the number of workers.

Fixed from the original: crops past the last full batch were silently dropped there
(`len(crops) // batch_size` forward passes per image); here every crop is scored.
"""

from __future__ import annotations

import bisect
import contextlib
import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from caffezoo.errors import CaffezooError
from caffezoo.evaluation.dataset import ImageError, Sample
from caffezoo.evaluation.preprocess import Pipeline

ON_ERROR = ("fail", "skip")
WORKER_KINDS = ("auto", "thread", "process")


def worker_kind_for(kind: str) -> str:
    """`auto` means threads for every runtime. pycaffe's forward keeps the GIL, so decoder
    processes could in principle run beside it, but on 2 cores they only compete with its
    OpenBLAS threads and pay for pickling: measured on SqueezeNet, end to end / forward-only was
    86 % with processes, 92 % with threads and 95 % decoding in line (docs/benchmarks.md).
    `process` stays available for machines with cores to spare."""
    return "thread" if kind == "auto" else kind


@dataclass
class EvalConfig:
    pipeline: Pipeline  # the net's input contract and the crop scheme
    output_blob: str
    num_classes: int
    batch_size: int = 16
    workers: int = 2
    top_k: tuple[int, ...] = (1, 5)
    on_error: str = "fail"
    worker_kind: str = "auto"  # thread | process | auto (see worker_kind_for)
    softmax: bool = False  # softmax each crop's row first (for nets that end in logits)
    keep_scores: bool = False  # keep every image's mean score vector (tests, analysis)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise CaffezooError(f"batch size must be at least 1, got {self.batch_size}")
        if self.workers < 0:
            raise CaffezooError(f"workers must be 0 or more, got {self.workers}")
        if not self.top_k or any(k < 1 for k in self.top_k):
            raise CaffezooError(f"top-k values must be positive, got {self.top_k}")
        if max(self.top_k) > self.num_classes:
            raise CaffezooError(f"top-{max(self.top_k)} is more than the net's "
                                f"{self.num_classes} classes")
        if self.worker_kind not in WORKER_KINDS:
            raise CaffezooError(f"worker kind must be one of {WORKER_KINDS}")
        if self.on_error not in ON_ERROR:
            raise CaffezooError(f"--on-error must be one of {ON_ERROR}, got {self.on_error!r}")


@dataclass
class Prediction:
    sample: Sample
    top: list[int]  # the max(top_k) best classes, best first
    scores: list[float]  # their mean scores over the crops

    def correct(self, k: int) -> bool:
        return self.sample.label in self.top[:k]


@dataclass
class Failure:
    sample: Sample
    reason: str


@dataclass
class EvalResult:
    listed: int
    top_k: tuple[int, ...]
    predictions: list[Prediction] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    correct: dict[int, int] = field(default_factory=dict)
    wall_s: float = 0.0
    forward_s: float = 0.0
    forward_calls: int = 0
    crops: int = 0
    scores: np.ndarray | None = None  # (evaluated, classes) float64 when keep_scores

    @property
    def evaluated(self) -> int:
        return len(self.predictions)

    def accuracy(self, k: int) -> float:
        return self.correct.get(k, 0) / self.evaluated if self.evaluated else 0.0

    @property
    def images_per_s(self) -> float:
        return self.evaluated / self.wall_s if self.wall_s > 0 else 0.0


def output_rows(out: np.ndarray, n: int, blob: str) -> np.ndarray:
    """(n, classes) view of an output blob shaped (n, classes) or (n, classes, 1, 1)."""
    if out.ndim < 2 or out.shape[0] != n or int(np.prod(out.shape[2:], dtype=np.int64)) != 1:
        raise CaffezooError(f"output blob '{blob}' has shape {tuple(out.shape)}; expected "
                            "(N, classes) or (N, classes, 1, 1)")
    return out.reshape(n, -1)


def softmax_rows(scores: np.ndarray) -> np.ndarray:
    """Softmax of each row, in float64."""
    x = scores.astype(np.float64)
    x -= x.max(axis=1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=1, keepdims=True)
    return x


def ends_in_softmax(net, blob: str) -> bool:
    """Whether the last layer writing `blob` in a NetParameter is a Softmax."""
    writers = [layer for layer in net.layer if blob in layer.top]
    return bool(writers) and writers[-1].type == "Softmax"


def probe_classes(runtime, crop_size: int, blob: str) -> int:
    """Number of classes of `blob` for crop-sized input, from one forward pass on zeros
    (it also warms the runtime up before anything is timed)."""
    zeros = np.zeros((1, 3, crop_size, crop_size), dtype=np.float32)
    out = runtime.forward(zeros, [blob])[blob]
    return output_rows(np.asarray(out), 1, blob).shape[1]


def _load_and_crop(sample: Sample, pipeline: Pipeline) -> np.ndarray:
    return pipeline.load(sample.path)


def _process_worker_init() -> None:
    # One decoding process per core at most: OpenCV's own thread pool would oversubscribe.
    from caffezoo.frameworks import import_cv2

    import_cv2().setNumThreads(1)


def _make_pool(kind: str, workers: int) -> Executor:
    if kind == "process":
        # spawn, not fork: the parent holds OpenBLAS and OpenCV thread pools that a forked
        # child would inherit in an undefined state.
        return ProcessPoolExecutor(max_workers=workers, initializer=_process_worker_init,
                                   mp_context=multiprocessing.get_context("spawn"))
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="caffezoo-decode")


def _crops_in_order(samples: Sequence[Sample], pipeline: Pipeline, workers: int,
                    lookahead: int, kind: str = "thread",
                    ) -> Iterator[tuple[int, np.ndarray | ImageError]]:
    """(index, crops or the ImageError) in list order; decoding runs up to `lookahead` images
    ahead in `workers` threads or processes (0: in the calling thread)."""
    if workers == 0:
        for i, s in enumerate(samples):
            try:
                yield i, _load_and_crop(s, pipeline)
            except ImageError as err:
                yield i, err
        return
    pool = _make_pool(kind, workers)
    try:
        pending: deque[tuple[int, Future]] = deque()
        upcoming = iter(enumerate(samples))

        def submit_one() -> None:
            nxt = next(upcoming, None)
            if nxt is not None:
                pending.append((nxt[0], pool.submit(_load_and_crop, nxt[1], pipeline)))

        for _ in range(lookahead):
            submit_one()
        while pending:
            i, fut = pending.popleft()
            submit_one()
            try:
                yield i, fut.result()
            except ImageError as err:
                yield i, err
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _Scorer:
    """Fills real batches with crops, runs them, and files each score row at its image."""

    def __init__(self, runtime, config: EvalConfig, result: EvalResult,
                 on_done: Callable[[Prediction], None], rows: int | None = None):
        self.runtime = runtime
        self.config = config
        self.result = result
        self.on_done = on_done
        c = config.pipeline.crop_size
        # A batch never holds more crops than there are (--batch-size 100000 for 3 images).
        self.rows_per_batch = min(config.batch_size, rows or config.batch_size)
        self.batch = np.empty((self.rows_per_batch, 3, c, c), dtype=np.float32)
        self.owners: list[tuple[int, int]] = []  # (image slot, crop index) per batch row
        self.rows: dict[int, np.ndarray] = {}  # image slot -> (crops, classes) scores
        self.filled: dict[int, int] = {}
        self.samples: dict[int, Sample] = {}
        self.kept_scores: list[np.ndarray] = []

    def add(self, slot: int, sample: Sample, crops: np.ndarray) -> None:
        n = crops.shape[0]
        self.rows[slot] = np.empty((n, self.config.num_classes), dtype=np.float64)
        self.filled[slot] = 0
        self.samples[slot] = sample
        for j in range(n):
            self.batch[len(self.owners)] = crops[j]
            self.owners.append((slot, j))
            if len(self.owners) == self.rows_per_batch:
                self.flush()

    def flush(self) -> None:
        n = len(self.owners)
        if n == 0:
            return
        blob = self.config.output_blob
        t0 = time.perf_counter()
        out = self.runtime.forward(self.batch[:n], [blob])[blob]
        self.result.forward_s += time.perf_counter() - t0
        self.result.forward_calls += 1
        self.result.crops += n
        scores = output_rows(np.asarray(out), n, blob)
        if scores.shape[1] != self.config.num_classes:
            raise CaffezooError(f"output blob '{blob}' has {scores.shape[1]} classes, "
                                f"expected {self.config.num_classes}")
        if self.config.softmax:
            scores = softmax_rows(scores)
        owners, self.owners = self.owners, []
        finished = []
        for r, (slot, j) in enumerate(owners):
            self.rows[slot][j] = scores[r]
            self.filled[slot] += 1
            if self.filled[slot] == self.rows[slot].shape[0]:
                finished.append(slot)
        for slot in finished:  # in list order, as crops were queued in list order
            self._finish(slot)

    def _finish(self, slot: int) -> None:
        rows = self.rows.pop(slot)
        del self.filled[slot]
        sample = self.samples.pop(slot)
        # Sum over a fixed (crops, classes) float64 array: the same numbers whatever the
        # batching. Ranking by the negated mean, as the original; stable for ties.
        mean = rows.sum(axis=0) / rows.shape[0]
        kmax = max(self.config.top_k)
        top = np.argsort(-mean, kind="stable")[:kmax]
        pred = Prediction(sample, [int(t) for t in top], [float(mean[t]) for t in top])
        if self.config.keep_scores:
            self.kept_scores.append(mean)
        self.on_done(pred)


def check_buffers(config: EvalConfig, batch_rows: int, lookahead: int) -> None:
    """Refuses, before allocating, a batch buffer and decoded-crop queue that would not fit in
    memory (the net itself is checked by the runtime at each new batch size)."""
    from caffezoo import memory

    crop_bytes = 3 * config.pipeline.crop_size ** 2 * 4
    needed = crop_bytes * (batch_rows + lookahead * config.pipeline.crops_per_image)
    memory.check(needed, f"the crops buffer (batch of {batch_rows} and {lookahead} decoded "
                         f"images of {config.pipeline.crops_per_image} crops)")


def evaluate(runtime, samples: Sequence[Sample], config: EvalConfig,
             on_image: Callable[[Prediction | Failure, EvalResult], None] | None = None,
             unit_starts: Sequence[int] = ()) -> EvalResult:
    """Evaluate `samples` on `runtime`. `on_image` is called after every image (a prediction
    or a failure), e.g. to draw progress. Image errors stop the run with --on-error fail.

    `unit_starts` (sorted positions in `samples`): a batch never spans two of these work units,
    so each is scored exactly as if it were evaluated alone (executors.py says why)."""
    result = EvalResult(listed=len(samples), top_k=tuple(config.top_k))
    result.correct = {k: 0 for k in config.top_k}

    def done(pred: Prediction) -> None:
        result.predictions.append(pred)
        for k in config.top_k:
            result.correct[k] += pred.correct(k)
        if on_image:
            on_image(pred, result)

    crops_per_image = config.pipeline.crops_per_image
    total_crops = len(samples) * crops_per_image
    batch_rows = max(1, min(config.batch_size, total_crops))
    # Enough decoded images to fill the next batch while this one runs, and one per worker.
    lookahead = min(len(samples), config.workers + -(-batch_rows // crops_per_image) + 1)
    check_buffers(config, batch_rows, lookahead)
    scorer = _Scorer(runtime, config, result, done, batch_rows)
    start = time.perf_counter()
    kind = worker_kind_for(config.worker_kind)
    stream = _crops_in_order(samples, config.pipeline, config.workers, lookahead, kind)
    unit = 0
    with contextlib.closing(stream):  # stops the workers at once on an error or Ctrl-C
        for slot, item in stream:
            if unit_starts and bisect.bisect_right(unit_starts, slot) != unit:
                scorer.flush()  # the unit before is complete: its last, partial batch
                unit = bisect.bisect_right(unit_starts, slot)
            sample = samples[slot]
            if isinstance(item, ImageError):
                if config.on_error == "fail":
                    raise item
                failure = Failure(sample, str(item))
                result.failures.append(failure)
                if on_image:
                    on_image(failure, result)
                continue
            scorer.add(slot, sample, item)
    scorer.flush()  # the leftover crops (the original dropped them)
    result.wall_s = time.perf_counter() - start
    if config.keep_scores:
        result.scores = (np.stack(scorer.kept_scores) if scorer.kept_scores
                         else np.zeros((0, config.num_classes)))
    return result
