"""The real-Caffe runtime: `caffe.Net` in TEST phase, CPU mode, in a child process.

Caffe gets the net as caffezoo re-wrote it and the weights as the arrays caffezoo already read
and checked: Caffe never parses a user's file. What caffezoo's checks still miss can only end
the child: a failed CHECK (SIGABRT) or a crash there becomes a `BackendCrash` naming the net,
the layer and Caffe's own message, and the caller's process lives on (docs/reliability.md).

The child (runtimes/_caffe_worker.py) is started with this interpreter and talks over two pipes:
batches go in and the requested blobs come back as raw float32 bytes; docs/benchmarks.md
measures what that costs against an in-process forward. It exits when the runtime is closed
or garbage-collected, or when this process ends (its request pipe closes).

Threads: Caffe's CPU work is OpenBLAS GEMM (its other layers are single-threaded). The child
is started with OPENBLAS_NUM_THREADS = `threads` (when given), so the setting is the child's
own and does not leak into the caller.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import struct
import subprocess
import sys
import tempfile
import weakref
from pathlib import Path

import numpy as np

from caffezoo import frameworks
from caffezoo.errors import BackendCrash, DependencyError, NetDefinitionError
from caffezoo.runtimes import CheckedNet, Runtime, check_for_caffe
from caffezoo.runtimes import _caffe_worker as proto

_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])


class PyCaffeRuntime(Runtime):
    backend = "pycaffe"

    def __init__(self, checked: CheckedNet, threads: int | None = None) -> None:
        super().__init__(checked, threads)
        check_for_caffe(checked)
        if importlib.util.find_spec("caffe") is None:
            frameworks.import_caffe()  # raises DependencyError with the fix
        self._worker = _Worker(str(checked.prototxt), threads)
        self._worker.layers = [(la.name, la.type) for la in checked.net.layer]
        self._finalizer = weakref.finalize(self, self._worker.close)
        weights = []
        if checked.weights is not None:
            for name, blobs in checked.weights.items():
                weights += [(f"{name}\x00{i}", b) for i, b in enumerate(blobs)]
        reply, _ = self._worker.call({"op": "load", "prototxt": checked.text()}, weights,
                                     doing="loading the net")
        checked.weights = None  # Caffe holds its own copy now; free ours
        self._blobs = set(reply["blobs"])
        self._worker.layer_names = reply["layers"]
        self.blas_threads: int | None = reply.get("blas_threads")  # as the child sees it
        self._batch = checked.input_shape[0]

    def _has_blob(self, name: str) -> bool:
        # Caffe's own blobs too (e.g. the Split blobs it inserts for a blob used twice).
        return name in self._blobs

    def _forward(self, batch: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        reply, arrays = self._worker.call({"op": "forward", "input": self.input_name,
                                       "names": names}, [("batch", batch)],
                                      doing=f"running a batch of {batch.shape[0]}")
        self.child_seconds = reply["seconds"]  # the forward pass alone, timed in the child
        return arrays

    def close(self) -> None:
        """Ends the child process (also done when the runtime is garbage-collected)."""
        self._finalizer()


class _Worker:
    """The child process and its pipes."""

    def __init__(self, label: str, threads: int | None) -> None:
        self.label = label
        self.layer_names: list[str] = []  # Caffe's, once loaded (Split layers included)
        self.layers: list[tuple[str, str]] = []  # (name, type) of the net we give Caffe
        env = dict(os.environ, GLOG_logtostderr="1", GLOG_minloglevel="0")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_PARENT,
                                                          env.get("PYTHONPATH")]))
        if threads is not None:
            env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = str(int(threads))
        self._log = tempfile.TemporaryFile(prefix="caffezoo-caffe-log-")  # unlinked already
        mark = tempfile.TemporaryFile(prefix="caffezoo-caffe-mark-")
        mark.write(b"\0" * proto.MARK_BYTES)
        mark.flush()
        self._mark = mark
        req_r, self._req = os.pipe()
        self._rep, rep_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "caffezoo.runtimes._caffe_worker", str(req_r),
                 str(rep_w), str(mark.fileno())],
                pass_fds=(req_r, rep_w, mark.fileno()), stdin=subprocess.DEVNULL,
                stdout=self._log, stderr=self._log, env=env)
        finally:
            os.close(req_r)
            os.close(rep_w)

    def call(self, header: dict, arrays, doing: str) -> tuple[dict, dict[str, np.ndarray]]:
        try:
            proto.send(self._req, header, arrays)
            reply, out = proto.receive(self._rep)
        except (EOFError, BrokenPipeError, ConnectionResetError):
            raise self._crash(doing) from None
        if "error" in reply:
            kind = {"NetDefinitionError": NetDefinitionError,
                    "DependencyError": DependencyError}.get(reply.get("kind"))
            if kind is not None:
                raise kind(f"{self.label}: {reply['error']}")
            raise BackendCrash(f"{self.label}: Caffe failed {doing}: {reply['error']}")
        return reply, out

    def _crash(self, doing: str) -> BackendCrash:
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._mark.seek(0)
        phase, index = struct.unpack("<ii", self._mark.read(proto.MARK_BYTES))
        self._log.seek(0, os.SEEK_END)
        size = self._log.tell()
        self._log.seek(max(0, size - 65536))
        log = self._log.read().decode("utf-8", "replace")
        reason = caffe_reason(log)
        where = ""
        if phase == 1 and 0 <= index < len(self.layer_names):
            where = f" in layer '{self.layer_names[index]}'"
        elif phase == 0:  # this Caffe logs no layer names while loading (DLOG): guess from
            where = _layers_named_in(reason, self.layers)  # the message
        how = (f"died from {signal.Signals(-code).name}" if code < 0 and -code in
               signal.valid_signals() else f"exited with status {code}")
        return BackendCrash(f"{self.label}: Caffe {how}{where} while {doing}: {reason}")

    def close(self) -> None:
        for fd in (self._req, self._rep):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        self._mark.close()


def _layers_named_in(reason: str, layers: list[tuple[str, str]]) -> str:
    """' in layer X' when Caffe's message names one layer of the net (by name, or as
    '<Type> Layer' when only one layer has that type), else ''."""
    named = [n for n, _ in layers if re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", reason)
             and re.search(rf"[Ll]ayer '?{re.escape(n)}\b", reason)]
    if len(named) == 1:
        return f" in layer '{named[0]}'"
    typed = [n for n, t in layers if f"{t} Layer" in reason]
    if len(typed) == 1:
        return f" in layer '{typed[0]}'"
    if typed:
        more = ", ..." if len(typed) > 5 else ""
        return f" in one of the {dict(layers)[typed[0]]} layers ({', '.join(typed[:5])}{more})"
    return ""


_GLOG_FATAL = re.compile(r"^F\d{4,8} [\d:.]+\s+\d+ ([^\]]*)\] ?(.*)$")


def caffe_reason(log: str) -> str:
    """The one line of a Caffe log that says why it died: glog's FATAL line (file:line and the
    failed check), else the last line that is not a stack frame."""
    for line in log.splitlines():
        m = _GLOG_FATAL.match(line.strip())
        if m:
            return f"{m.group(2).strip()} ({m.group(1)})"
    lines = [ln.strip() for ln in log.splitlines() if ln.strip() and not
             re.match(r"^(@|\*\*\*|[IW]\d{4,8} )", ln.strip())]
    return lines[-1][:300] if lines else "no message"
