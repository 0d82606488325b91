"""The Ray executor: the same evaluation on a Ray cluster (a local one by default).

The driver (this process) splits the list into the work units of `executors.EvalJob`, starts one
actor per worker (each opens its runtime once and decodes its own images), hands out units
through Ray's `ActorPool`, and writes each finished unit's entries into the record: the same
record, files and counts as the in-process executor.

What Ray does for us: placement (each actor asks for `threads` CPUs, and a GPU when the backend
can use one and the cluster has GPUs), and recovery: an actor whose process dies is restarted
(`max_restarts`) and the unit it was scoring is run again (`max_task_retries`); since only a
unit's returned result is recorded, and a unit is scored from its first crop, a retry can
neither count an image twice nor change a score.

Files: every worker reads the weights and the images at the paths the driver gives, so on a
cluster of several machines they must be on storage that all of them see at the same path
(docs/evaluation.md); the prototxt travels with the actor's arguments.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from caffezoo.errors import BackendCrash, CaffezooError, UsageError
from caffezoo.evaluation.executors import (
    EvalJob,
    SessionStats,
    WorkerState,
    to_entry,
)
from caffezoo.evaluation.record import Entry, Record

MAX_RESTARTS = 3      # an actor's process may die this often (then the run stops, resumable)
MAX_TASK_RETRIES = 3  # a unit whose actor died is run again this often
POLL_S = 1.0          # how often the progress line is refreshed while units run


@dataclass
class RayOptions:
    address: str | None = None  # None: start a local Ray; "auto" or host:port or ray://...
    workers: int | None = None  # None: as many as the cluster's CPUs allow
    verbose: bool = False       # Ray's own log lines on the terminal


class EvalWorker:
    """A Ray actor: opens the runtime once, then scores the units it is given."""

    def __init__(self, name: str, prototxt_name: str, prototxt_text: str, weights: str,
                 backend: str, threads: int, config) -> None:
        from caffezoo.runtimes import open_runtime

        self.name = name
        self.config = config
        self.runtime, self.error = None, None
        # Every runtime reads the prototxt when it opens; the copy is not needed after.
        with tempfile.TemporaryDirectory(prefix="caffezoo-ray-") as tmp:
            path = Path(tmp) / prototxt_name
            path.write_text(prototxt_text, encoding="utf-8")
            try:
                self.runtime = open_runtime(backend, path, weights, threads=threads)
            except CaffezooError as err:  # e.g. the weights are not at that path on this node
                self.error = _on_node(err)  # said by run(), in our words, not as a dead actor

    def run(self, items: list) -> dict:
        """Scores one unit: `items` are (list index, Sample) pairs."""
        import ray

        from caffezoo.evaluation.classify import evaluate

        if self.error is not None:
            raise self.error
        start = time.perf_counter()
        index_of = {sample: index for index, sample in items}
        try:
            result = evaluate(self.runtime, [sample for _, sample in items], self.config)
        except CaffezooError as err:  # a bad image with --on-error fail
            raise _on_node(err) from None
        entries = [to_entry(index_of[item.sample], item)
                   for item in (*result.predictions, *result.failures)]
        return {"worker": self.name, "pid": os.getpid(), "node": ray.util.get_node_ip_address(),
                "entries": entries, "forward_s": result.forward_s,
                "forward_calls": result.forward_calls, "crops": result.crops,
                "wall_s": time.perf_counter() - start}


class _NotFromRay:
    """A text stream that passes on what every thread writes but Ray's own: Ray's driver
    prints cluster events (a worker died, a task is retried) on sys.stdout from threads named
    `ray_...`; the per-worker state says it in our words, and stdout may carry caffezoo's JSON."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        if threading.current_thread().name.startswith("ray_"):
            return len(text)
        return self._stream.write(text)

    def __getattr__(self, name: str):  # flush, isatty, fileno, encoding ...
        return getattr(self._stream, name)


@contextlib.contextmanager
def ray_lines_off(verbose: bool = False) -> Iterator[None]:
    """Ray's own lines off sys.stdout and sys.stderr while connected (kept with `verbose`)."""
    if verbose:
        yield
        return
    with contextlib.redirect_stdout(_NotFromRay(sys.stdout)), \
            contextlib.redirect_stderr(_NotFromRay(sys.stderr)):
        yield


def _on_node(err: CaffezooError) -> CaffezooError:
    """The same error, saying which machine met it (a file missing on one node of several)."""
    import ray

    return type(err)(f"{err} (on the Ray worker at {ray.util.get_node_ip_address()})")


def connect(options: RayOptions) -> bool:
    """Connects this process to Ray (unless it already is); True when we did, and so must
    disconnect. Ray's log lines stay off the terminal unless `verbose`."""
    from caffezoo.frameworks import import_ray

    ray = import_ray()
    if ray.is_initialized():
        return False
    if options.address not in (None, "auto"):
        reachable(options.address)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report, no note about it
    kwargs: dict = {"log_to_driver": options.verbose,
                    "logging_level": logging.INFO if options.verbose else logging.ERROR}
    if options.address is None:
        kwargs["include_dashboard"] = False
    try:
        # "local": a Ray of our own even where `ray start` left one running (None would join it)
        ray.init(address=options.address or "local", **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = options.address or "a new local Ray"
        text = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UsageError(f"cannot connect to {where} ({text}); check --ray-address") from None
    return True


def disconnect(verbose: bool = False) -> None:
    """ray.shutdown(), without the lines Ray still holds back (repeated events): it prints them
    from this thread as it shuts down."""
    from caffezoo.frameworks import import_ray

    if verbose:
        import_ray().shutdown()
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), \
            contextlib.redirect_stderr(sink):
        import_ray().shutdown()


def reachable(address: str) -> None:
    """Refuses an address nothing answers at, in seconds (Ray itself would retry for minutes,
    printing warnings)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray-address {address!r}: expected auto, HOST:PORT or "
                         "ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as err:
        raise UsageError(f"nothing answers at --ray-address {address} "
                         f"({err.strerror or err}): is the Ray cluster up?") from None


def gpus_per_worker(ray, backend: str) -> int:
    """1 when the backend can run on a GPU and the cluster has GPUs, else 0."""
    from caffezoo.runtimes import can_use_gpu

    return 1 if ray.cluster_resources().get("GPU", 0) >= 1 and can_use_gpu(backend) else 0


def worker_note(states: dict[str, WorkerState]) -> str:
    """The per-worker part of the progress line: "w0 31.2/s, w1 starting, 1 restart"."""
    parts = [f"{s.name} {s.rate:.1f}/s" if s.images else f"{s.name} starting"
             for s in states.values()]
    restarts = sum(s.restarts for s in states.values())
    if restarts:
        parts.append(f"{restarts} restart{'s' if restarts > 1 else ''}")
    return ", ".join(parts)


def run_ray(job: EvalJob, record: Record, options: RayOptions,
            on_new: Callable[[list[Entry]], None],
            on_state: Callable[[dict[str, WorkerState]], None] = lambda states: None,
            ) -> SessionStats:
    """Evaluates the record's missing units on Ray; `on_new` gets each unit's new entries as
    they are recorded, `on_state` the workers' states (about every second)."""
    from caffezoo.frameworks import import_ray

    ray = import_ray()
    with ray_lines_off(options.verbose):
        ours = connect(options)
        try:
            return _run_units(ray, job, record, options, on_new, on_state)
        finally:
            if ours:
                disconnect(options.verbose)


def _run_units(ray, job: EvalJob, record: Record, options: RayOptions, on_new, on_state,
               ) -> SessionStats:
    from ray.util import ActorPool

    stats = SessionStats("ray", address=options.address or "local")
    units = job.pending_units(record)
    if not units:
        return stats
    threads = job.threads or 1
    cpus = int(ray.cluster_resources().get("CPU", 1))
    if threads > cpus:
        raise UsageError(f"--threads {threads} per worker is more than the cluster's "
                         f"{cpus} CPUs")
    count = min(options.workers or max(1, cpus // threads), len(units))
    worker = ray.remote(EvalWorker).options(
        num_cpus=threads, num_gpus=gpus_per_worker(ray, job.backend),
        max_restarts=MAX_RESTARTS, max_task_retries=MAX_TASK_RETRIES)
    text = job.prototxt.read_text(encoding="utf-8")
    actors = [worker.remote(f"w{i}", job.prototxt.name, text, str(job.weights), job.backend,
                            threads, job.config) for i in range(count)]
    try:
        states = {f"w{i}": WorkerState(f"w{i}") for i in range(count)}
        stats.workers = list(states.values())
        pool = ActorPool(actors)
        record.start_session("ray", count)
        for unit in units:
            pool.submit(lambda actor, items: actor.run.remote(items),
                        [(i, job.samples[i]) for i in unit])
        while pool.has_next():
            try:
                done = pool.get_next_unordered(timeout=POLL_S)
            except TimeoutError:
                on_state(states)
                continue
            except ray.exceptions.RayTaskError as err:
                cause = getattr(err, "cause", None)
                if isinstance(cause, CaffezooError):  # a bad image, a net that does not fit
                    raise cause from None
                raise
            except ray.exceptions.RayActorError as err:
                raise BackendCrash(f"a Ray worker failed for good ({_first_line(err)}); the "
                                   "units done so far are in the record") from None
            state = states[done["worker"]]
            if state.pid is not None and done["pid"] != state.pid:
                state.restarts += 1
            state.pid, state.where = done["pid"], done["node"]
            state.images += len(done["entries"])
            state.busy_s += done["wall_s"]
            stats.forward_s += done["forward_s"]
            stats.forward_calls += done["forward_calls"]
            stats.crops += done["crops"]
            new = record.add(done["entries"])
            if new:
                on_new(new)
            on_state(states)
        stats.wall_s = record.elapsed()
        return stats
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)


def _first_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[0] if lines else type(err).__name__
