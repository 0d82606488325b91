"""`--backend auto`: the fastest exact runtime for the net at hand, found by a short measured
probe and remembered per net and machine.

The probe:
1. Every installed candidate (CANDIDATES: onnxruntime, openvino, torch, opencv) loads the net
   and runs one seeded random batch of 1. Real Caffe (pycaffe; OpenCV when pycaffe is not
   installed) runs the same batch as the reference: a candidate that fails to load or run, or
   whose outputs differ from the reference's by more than TOLERANCE (relative to the largest
   |value|), is out, with the reason recorded.
2. The cheap estimate: each exact candidate runs the batch of 1 ESTIMATE_PASSES more times,
   timed, its best pass kept (its first pass paid for compilation and allocation; one pass
   slowed by another process must not rule a candidate out). Those slower than SKIP x the
   fastest cannot win and are skipped: the race below is not run for them.
3. The race, at the caller's batch size, or fewer images when a pass of that many would take
   longer than PASS_S by the estimate (a large net at a large batch: per image, a batch of a
   few runs as fast as a batch of many, and the race stays seconds long): one warm-up pass
   each, then round-robin rounds of one pass each (a change in the machine's load hits all
   alike), each round starting one candidate further on (no candidate always follows the
   same one and meets what that one leaves running). ROUNDS rounds, and more, up to
   MAX_ROUNDS, while the passes add up to less than RACE_S (short passes: more samples of
   each candidate's best, so that a burst of load during a few of them cannot decide; long
   ones stop at ROUNDS); no candidate leaves the race early (a few slowed passes would have
   made it leave). A candidate's figure is its best pass (what it can do; slower passes are other
   processes' doing); the lowest wins. No candidate left: pycaffe.

The cache: one small JSON file per probe under `$CAFFEZOO_PROBE_CACHE`, default
`$CAFFEZOO_CACHE/backend-probe` (`~/.cache/caffezoo/backend-probe`), named by the SHA-256 of
what the choice depends on: caffezoo's version, the net as caffezoo checked it (its prototxt
text), the SHA-256 of the weights file, the batch size and threads, the machine (CPU model,
flags and core count, GPUs torch or OpenVINO see) and the installed versions of the candidate
frameworks. A change to any of them is a new key, so nothing goes stale; deleting the folder
forces new probes. The file holds the choice and every candidate's figure or reason; the
runtime returned carries it as `.probe` (docs/runtimes.md).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from caffezoo import __version__
from caffezoo.errors import CaffezooError, DependencyError

CANDIDATES = ("onnxruntime", "openvino", "torch", "opencv")
REFERENCES = ("pycaffe", "opencv")
TOLERANCE = 1e-4
ROUNDS = 3  # at least
MAX_ROUNDS = 15
RACE_S = 1.0  # more rounds (up to MAX_ROUNDS) while the passes add up to less than this
ESTIMATE_PASSES = 2
SKIP = 2.0  # by the batch-1 estimate: this much slower than the fastest cannot win the race
PASS_S = 0.5  # the race's batch is capped so that one pass takes about this long
_DISTRIBUTIONS = {"onnxruntime": "onnxruntime", "openvino": "openvino", "torch": "torch",
                  "opencv": "opencv-python-headless", "pycaffe": None}


@dataclass
class Probe:
    """What a probe found (also what the cache file holds)."""

    backend: str
    batch_size: int
    threads: int | None
    reference: str | None  # the runtime the candidates were checked against
    ms_per_image: dict[str, float] = field(default_factory=dict)  # best pass, per candidate
    excluded: dict[str, str] = field(default_factory=dict)  # candidate -> why it is out
    seconds: float = 0.0  # how long the probe took
    cached: bool = False  # read from the cache in this run
    estimate_ms: dict[str, float] = field(default_factory=dict)  # batch 1, per exact candidate
    skipped: list[str] = field(default_factory=list)  # too slow by the estimate to race
    race_batch: int = 0  # the batch the race ran (batch_size, or fewer: step 3)
    phases: dict[str, float] = field(default_factory=dict)  # seconds: load, reference, ...

    def summary(self) -> str:
        timed = ", ".join(f"{b} {ms:.2f}" for b, ms in sorted(self.ms_per_image.items(),
                                                            key=lambda kv: kv[1]))
        out = f"auto: {self.backend}"
        if timed:
            out += f" (ms/image at batch {self.race_batch or self.batch_size}: {timed})"
        if self.skipped:
            out += ("; too slow at batch 1 to race: "
                    + ", ".join(f"{b} {self.estimate_ms[b]:.2f}" for b in self.skipped))
        if self.excluded:
            out += "; not used: " + "; ".join(f"{b}: {why}" for b, why in self.excluded.items())
        return out


def cache_dir() -> Path:
    explicit = os.environ.get("CAFFEZOO_PROBE_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    root = os.environ.get("CAFFEZOO_CACHE") or Path.home() / ".cache" / "caffezoo"
    return Path(root).expanduser() / "backend-probe"


def installed(backend: str) -> bool:
    from caffezoo.runtimes import _IMPORTS

    return importlib.util.find_spec(_IMPORTS[backend]) is not None


def open_fastest(prototxt, weights=None, threads: int | None = None,
                 batch_size: int | None = None):
    """The runtime `--backend auto` gives for this net: the probe's choice, from the cache
    when this net and machine were probed before. The runtime's `probe` attribute says why."""
    from caffezoo.runtimes import check_net, open_runtime

    checked = check_net(prototxt)  # the weights are read by the runtime(s) opened below
    if weights is not None and not Path(weights).is_file():
        check_net(prototxt, weights)  # one clear line for a missing or unreadable file
    batch = int(batch_size or checked.input_shape[0])
    key = _key(checked, weights, batch, threads)
    path = cache_dir() / f"{key}.json"
    found = _read(path)
    if found is not None and (found.backend == "pycaffe" or installed(found.backend)):
        try:
            runtime = open_runtime(found.backend, prototxt, weights, threads)
        except DependencyError:
            pass  # installed but broken since: probe again
        else:
            found.cached = True
            runtime.probe = found
            return runtime
    probe, runtime = _probe(prototxt, weights, threads, batch, checked.input_shape)
    _write(path, probe)
    runtime.probe = probe
    return runtime


def _probe(prototxt, weights, threads, batch, shape):
    from caffezoo.runtimes import open_runtime

    start = time.perf_counter()
    probe = Probe("pycaffe", batch, threads, None)
    lap = _Lap(probe.phases)
    runtimes = {}
    for backend in CANDIDATES:
        if not installed(backend):
            continue
        try:
            runtimes[backend] = open_runtime(backend, prototxt, weights, threads)
        except Exception as err:  # noqa: BLE001 - any failure rules the backend out
            probe.excluded[backend] = _short(err)
    lap("load")
    x1 = np.random.default_rng(0).standard_normal((1, *shape[1:]), dtype=np.float32)
    want = _reference_outputs(runtimes, prototxt, weights, threads, x1, probe)
    lap("reference")
    if not runtimes and probe.reference is None:
        raise CaffezooError(f"{prototxt}: no runtime runs this net ("
                            + "; ".join(f"{b}: {why}" for b, why in probe.excluded.items())
                            + ")" if probe.excluded else "no runtime is installed")
    for backend, rt in list(runtimes.items()):
        why = _mismatch(rt, x1, want)
        if why:
            probe.excluded[backend] = why
            del runtimes[backend]
    lap("check")
    if runtimes:
        probe.estimate_ms = _estimate(runtimes, x1)
        fastest = min(probe.estimate_ms.values())
        probe.skipped = [b for b, ms in probe.estimate_ms.items() if ms > SKIP * fastest]
        racing = {b: rt for b, rt in runtimes.items() if b not in probe.skipped}
        lap("estimate")
        fits = PASS_S * 1000 / max(fastest, 1e-6)  # images in a pass of PASS_S
        probe.race_batch = batch if fits >= batch else max(1, int(fits))
        probe.ms_per_image = _race(racing, probe.race_batch, shape)
        probe.backend = min(probe.ms_per_image, key=probe.ms_per_image.get)
        lap("race")
    else:  # no candidate is exact here: the reference itself
        probe.backend = probe.reference
    probe.seconds = round(time.perf_counter() - start, 2)
    print(f"{probe.summary()} [probe {probe.seconds:.1f} s, cached]", file=sys.stderr)
    if probe.backend in runtimes:
        return probe, runtimes[probe.backend]
    return probe, open_runtime(probe.backend, prototxt, weights, threads)


class _Lap:
    """Records into `phases` the seconds since the previous call, under a name."""

    def __init__(self, phases: dict) -> None:
        self.phases, self.last = phases, time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = round(now - self.last, 3)
        self.last = now


def _estimate(runtimes: dict, x1, clock=time.perf_counter) -> dict[str, float]:
    """ms of the best of ESTIMATE_PASSES timed passes of the batch of 1 per runtime (step 2
    of the module docstring)."""
    out = {}
    for backend, rt in runtimes.items():
        for _ in range(ESTIMATE_PASSES):
            t0 = clock()
            rt.forward(x1, _wanted(rt))
            ms = round(1000 * (clock() - t0), 3)
            out[backend] = min(out.get(backend, ms), ms)
    return out


def _reference_outputs(runtimes, prototxt, weights, threads, x, probe):
    """The outputs on x of the first reference runtime (REFERENCES) that runs this net, or
    None when none does (the candidates are then not checked)."""
    from caffezoo.runtimes import open_runtime

    for reference in REFERENCES:
        if not installed(reference):
            continue
        rt = None
        try:
            rt = runtimes.get(reference) or open_runtime(reference, prototxt, weights, threads)
            probe.reference = reference
            return rt.forward(x)
        except CaffezooError as err:
            probe.excluded[f"{reference} (reference)"] = _short(err)
        finally:
            if rt is not None and reference not in runtimes and hasattr(rt, "close"):
                rt.close()
    probe.reference = None
    return None


def _mismatch(rt, x, want) -> str | None:
    """Why `rt` is out: it fails on x, or differs from `want` beyond TOLERANCE. It is asked
    for what the timed passes ask for (`_wanted`), so that the estimate that follows times a
    pass, not the building of another model for other outputs."""
    names = _wanted(rt)
    try:
        got = rt.forward(x, names)
    except Exception as err:  # noqa: BLE001 - any failure rules the backend out
        return _short(err)
    if want is None:
        return None
    for name in names:
        ref = want[name]
        scale = float(np.abs(ref).max()) or 1.0
        err = float(np.abs(got[name] - ref).max()) / scale
        if not err <= TOLERANCE:  # NaN too
            return f"output '{name}' differs from the reference by {err:.1e} (relative)"
    return None


def _race(runtimes: dict, batch: int, shape, clock=time.perf_counter) -> dict[str, float]:
    """Best ms per image of each runtime at `batch` (module docstring, step 3). `clock`: the
    time source (tests give a fake one)."""
    x = np.random.default_rng(1).standard_normal((batch, *shape[1:]), dtype=np.float32)
    for rt in runtimes.values():
        rt.forward(x, _wanted(rt))  # warm-up: first-pass compilation and allocation
    best = {b: float("inf") for b in runtimes}
    racing = list(runtimes)
    spent, rounds = 0.0, 0
    while rounds < ROUNDS or (rounds < MAX_ROUNDS and spent < RACE_S):
        turn = rounds % len(racing)
        for backend in racing[turn:] + racing[:turn]:  # each round starts one further on
            t0 = clock()
            runtimes[backend].forward(x, _wanted(runtimes[backend]))
            took = clock() - t0
            spent += took
            best[backend] = min(best[backend], took)
        rounds += 1
    return {b: round(1000 * t / batch, 3) for b, t in best.items()}


def _wanted(rt) -> list[str]:
    """What the timed passes ask for: the net's outputs as `eval` uses them, without the blobs
    only a Silence reads (slice halves a converted net drops; OpenCV runs an extra pass for
    each), unless those are all the net has."""
    stats = rt.checked.analysis
    return list(stats.outputs or stats.results)


def _short(err: Exception) -> str:
    text = str(err).splitlines()[0] if str(err).strip() else ""
    if not isinstance(err, CaffezooError):
        text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text[:200]


# -- the key ------------------------------------------------------------------------------------


def _file_digest(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def machine() -> dict:
    """What identifies this machine's speed: CPU model, flags, cores, visible GPUs."""
    cpu, flags = platform.processor(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == "model name" and cpu in ("", platform.machine()):
                cpu = value.strip()
            elif name.strip() == "flags" and not flags:
                flags = hashlib.sha256(value.strip().encode()).hexdigest()[:16]
    except OSError:
        pass
    gpus = [f"nvidia:{p.name}" for p in _listdir("/proc/driver/nvidia/gpus")]
    gpus += [p.name for p in _listdir("/dev/dri") if p.name.startswith("renderD")]
    return {"cpu": cpu or platform.machine(), "cpu_flags": flags, "cores": os.cpu_count(),
            "gpus": sorted(gpus)}


def _listdir(folder: str) -> list[Path]:
    try:
        return list(Path(folder).iterdir())
    except OSError:
        return []


def _key(checked, weights, batch: int, threads: int | None) -> str:
    versions = {}
    for backend, dist in _DISTRIBUTIONS.items():
        if dist is not None and installed(backend):
            try:
                versions[backend] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                versions[backend] = "?"
    parts = {"caffezoo": __version__, "net": hashlib.sha256(checked.text().encode()).hexdigest(),
             "weights": _file_digest(weights) if weights is not None else None,
             "batch": batch, "threads": threads, "machine": machine(), "versions": versions}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def _read(path: Path) -> Probe | None:
    try:
        data = json.loads(path.read_text())
        return Probe(**data)
    except (OSError, ValueError, TypeError):
        return None  # absent, or written by another version: probe again


def _write(path: Path, probe: Probe) -> None:
    from caffezoo import netio

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        netio.atomic_write(path, json.dumps(asdict(probe), indent=1) + "\n")
    except OSError as err:  # a read-only home: the choice still holds for this run
        print(f"auto: cannot cache the probe in {path.parent}: {err.strerror}", file=sys.stderr)
