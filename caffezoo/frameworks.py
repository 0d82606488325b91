"""Lazy, patched imports of the heavy frameworks.

Nothing here imports a framework at module import time: `caffezoo info` and `generate` must start
fast and work without them. Each `import_*` function imports on first call, applies the
compatibility patch that the pinned versions need (docs/install.md), and raises
`DependencyError` with one line saying what is missing and how to fix it.

Patches, and why:
- torchvision 0.28 / timm: torchvision's compiled ops library does not load beside the CPU build
  of torch 2.13, and its import then dies registering fake kernels for two operators that were
  never defined (`torchvision::nms`, `torchvision::qnms`). We define those two schemas (stubs with
  no kernel) before the import, only when the compiled library cannot be loaded. Classification
  models and transforms do not use them; calling `torchvision.ops.nms` still fails loudly.
- tf_slim 1.1.0 on TensorFlow 2.21: it refers to `tensorflow.python.framework.ops.Tensor`, which
  TF 2.21 no longer has; it is the same class as `tf.Tensor`.
- mxnet 1.9.1 on numpy 2: it reads numpy names removed in numpy 2 (and the financial functions
  removed in 1.20) at import time. We restore exactly those, each only if missing.
- caffe: glog is quiet (GLOG_minloglevel=2) unless the user set it; CPU mode.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib
import importlib.metadata
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from caffezoo.errors import DependencyError

FIX = "run scripts/setup.sh (it installs the pinned versions and builds Caffe)"


def _dependency_error(what: str, err: BaseException | str, fix: str = FIX) -> DependencyError:
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return DependencyError(f"{what} is not usable ({reason}); {fix}")


def _import(module: str, what: str, fix: str = FIX) -> ModuleType:
    try:
        return importlib.import_module(module)
    except Exception as err:  # ImportError, but also a broken compiled module's RuntimeError
        raise _dependency_error(what, err, fix) from err


# --------------------------------------------------------------------------- caffe

def set_blas_threads(threads: int) -> bool:
    """Sets the thread count of the OpenBLAS that Caffe uses.

    OPENBLAS_NUM_THREADS is read once, when OpenBLAS is loaded (with `import caffe`), so it is
    set here for a later import; for an already loaded OpenBLAS we call its
    `openblas_set_num_threads`. Returns True when the running library was changed."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    os.environ["OPENBLAS_NUM_THREADS"] = str(threads)
    if "caffe" not in sys.modules:
        return False
    # The system OpenBLAS that libcaffe links against (numpy's own bundled copy is a different
    # library with prefixed symbols and is not affected).
    for name in ("libopenblas.so.0", ctypes.util.find_library("openblas")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
            lib.openblas_set_num_threads(ctypes.c_int(threads))
            return True
        except (OSError, AttributeError):
            continue
    return False


def import_caffe(quiet: bool = True, threads: int | None = None) -> ModuleType:
    """Imports pycaffe in CPU mode. `quiet` keeps glog to errors unless GLOG_minloglevel is set
    (it must be set before the first import to count)."""
    if quiet:
        os.environ.setdefault("GLOG_minloglevel", "2")
    if threads is not None:
        set_blas_threads(threads)
    caffe = _import("caffe", "pycaffe (import caffe)")
    if not hasattr(caffe, "Net"):
        raise _dependency_error("pycaffe", f"the 'caffe' module at {caffe.__file__} is not pycaffe")
    caffe.set_mode_cpu()
    return caffe


def _pycaffe_root() -> Path | None:
    """The Caffe source tree that pycaffe comes from, found without importing it."""
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec("caffe")
        if spec and spec.origin:
            # <tree>/python/caffe/__init__.py
            return Path(spec.origin).resolve().parents[2]
    return None


def caffe_tool() -> str:
    """Path of the `caffe` command line tool: on PATH, next to this interpreter (the venv's bin),
    or in the build tree pycaffe comes from."""
    candidates = [shutil.which("caffe"), str(Path(sys.executable).parent / "caffe")]
    root = _pycaffe_root()
    if root is not None:
        for sub in (".temp_release", "build"):
            tools = root / sub / "tools"
            candidates += [str(tools / "caffe.bin"), str(tools / "caffe")]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise DependencyError(f"the caffe tool was not found on PATH, in {Path(sys.executable).parent} "
                          f"or next to pycaffe; {FIX}")


# --------------------------------------------------------------------------- opencv

def import_cv2() -> ModuleType:
    """Imports OpenCV and checks it has the Caffe importer (OpenCV 5 removed it)."""
    cv2 = _import("cv2", "OpenCV (import cv2)")
    major = int(str(cv2.__version__).split(".")[0])
    fix = 'install opencv-python-headless < 5 (scripts/setup.sh pins 4.14.0.94)'
    if major >= 5:
        raise _dependency_error(f"OpenCV {cv2.__version__}", "OpenCV 5 has no Caffe importer", fix)
    if not hasattr(getattr(cv2, "dnn", None), "readNetFromCaffe"):
        raise _dependency_error(f"OpenCV {cv2.__version__}", "cv2.dnn.readNetFromCaffe is missing",
                                fix)
    return cv2


# --------------------------------------------------------------------------- torch family

TORCHVISION_STUB_OPS = ("nms", "qnms")
_torchvision_stub_lib = None  # keeps the registration alive


def import_torch() -> ModuleType:
    if "torch" not in sys.modules:
        # torch's OpenMP threads otherwise spin at every barrier before they sleep: on a
        # machine whose cores other processes also use, a spinning thread holds the core the
        # thread it waits for needs, and a forward pass took 12.6 ms or 2,111 ms per image
        # from one run to the next (EfficientNet-Lite0; docs/benchmarks.md measures it).
        # libgomp reads the policy once, when torch loads it; a user's setting wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return _import("torch", "PyTorch (import torch)")


def load_torch_weights(source) -> object:
    """`torch.load(source, weights_only=True)` on the CPU (a path or a file object): no pickled
    code can run. Its warnings (about the pickle protocol of a file it then refuses) are
    silenced; any failure is a ValueError with the first line of torch's message."""
    torch = import_torch()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError for non-weights content, RuntimeError for junk
        text = str(err).strip()
        # torch's refusal starts with advice to load with weights_only=False (which would run
        # the file's code); what it found is after "WeightsUnpickler error:"
        found = text.partition("WeightsUnpickler error:")[2].strip()
        if found:
            text = f"refused by the weights-only loader: {found.split('. ')[0].strip()}"
        elif isinstance(err, (KeyError, EOFError, IndexError)):  # its message is a bare key
            text = f"corrupt or truncated data ({type(err).__name__}{': ' if text else ''}{text})"
        raise ValueError((text.splitlines()[0] if text else type(err).__name__)[:200]
                         ) from None


def _patch_torchvision_ops(torch: ModuleType) -> None:
    """Defines torchvision::nms and ::qnms when torchvision's compiled ops cannot be loaded."""
    global _torchvision_stub_lib
    if _torchvision_stub_lib is not None or "torchvision" in sys.modules:
        return
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return  # not installed: the import below reports it
    folder = Path(next(iter(spec.submodule_search_locations)))
    for lib in sorted(folder.glob("_C*.so")) + sorted(folder.glob("_C*.pyd")):
        try:
            torch.ops.load_library(str(lib))
            return  # the real operators exist; no stubs needed
        except (OSError, RuntimeError):
            pass
    stubs = torch.library.Library("torchvision", "DEF")
    for op in TORCHVISION_STUB_OPS:
        stubs.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _torchvision_stub_lib = stubs


def import_torchvision() -> ModuleType:
    torch = import_torch()
    try:
        _patch_torchvision_ops(torch)
    except Exception as err:
        raise _dependency_error("torchvision", err) from err
    return _import("torchvision", "torchvision (import torchvision)")


def import_timm() -> ModuleType:
    import_torchvision()  # timm imports torchvision; it needs the same stubs
    return _import("timm", "timm (import timm)")


def import_torchfile() -> ModuleType:
    return _import("torchfile", "torchfile (reader of Lua Torch .t7 files)")


# --------------------------------------------------------------------------- onnx

def import_onnx() -> ModuleType:
    """onnx with the submodules the exporter and the front end use (not imported by onnx)."""
    for module in ("onnx.helper", "onnx.numpy_helper", "onnx.shape_inference"):
        _import(module, "onnx (import onnx)")
    return _import("onnx", "onnx (import onnx)")


def import_onnxruntime() -> ModuleType:
    return _import("onnxruntime", "onnxruntime (import onnxruntime)")


# --------------------------------------------------------------------------- ray

RAY_HINT = "pip install caffezoo[ray]"


def import_ray() -> ModuleType:
    """Ray, the distributed executor of evaluation (an optional extra of the package)."""
    return _import("ray", "Ray (import ray), needed by --executor ray,", fix=RAY_HINT)


# --------------------------------------------------------------------------- openvino

OPENVINO_FIX = ("install caffezoo's optional extra 'openvino' (pip install 'caffezoo[openvino]'; "
                "scripts/setup.sh installs it, pinned)")


def import_openvino() -> ModuleType:
    """OpenVINO, an optional backend: missing, it is a DependencyError naming the extra."""
    try:
        import openvino
    except Exception as err:
        raise _dependency_error("OpenVINO (import openvino)", err, OPENVINO_FIX) from err
    if not hasattr(openvino, "Core"):
        raise _dependency_error("OpenVINO", f"the 'openvino' module at {openvino.__file__} has "
                                "no Core (a release before 2023.1)", OPENVINO_FIX)
    return openvino


# --------------------------------------------------------------------------- tensorflow

@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """File descriptor 2 goes to /dev/null for the block: what native libraries log there
    (MXNet's INFO lines on every bind, TensorFlow's oneDNN notice on import, written before
    its logging honours TF_CPP_MIN_LOG_LEVEL) would come before caffezoo's one line. Python
    exceptions pass through unchanged."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_tensorflow() -> ModuleType:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules:
        # pycaffe loaded after TensorFlow crashes (segfault) when it parses a net: their
        # protobuf runtimes clash. Loaded first, both work; so load it first when present.
        with contextlib.suppress(DependencyError):
            import_caffe()
    with native_stderr_silenced():
        tf = _import("tensorflow", "TensorFlow (import tensorflow)")
    # its Python logger's deprecation notices (Variable.load, ...) are not the user's concern
    tf.get_logger().setLevel("ERROR")
    return tf


def import_tf_slim() -> ModuleType:
    tf = import_tensorflow()
    try:
        from tensorflow.python.framework import ops
    except Exception as err:
        raise _dependency_error("TensorFlow", err) from err
    if not hasattr(ops, "Tensor"):
        ops.Tensor = tf.Tensor  # removed in TF 2.21; tf_slim still refers to it
    # tf_slim builds its layers with the deprecated `layer.apply`: Keras warns on every call
    warnings.filterwarnings("ignore", message="`layer.apply` is deprecated",
                            category=UserWarning)
    return _import("tf_slim", "tf_slim (import tf_slim)")


# --------------------------------------------------------------------------- mxnet

def _financial_removed(name: str):
    def removed(*args, **kwargs):
        raise RuntimeError(f"numpy.{name} was removed in numpy 1.20 (see numpy_financial)")
    removed.__name__ = name
    return removed


def _mxnet_numpy_aliases(np: ModuleType) -> dict[str, object]:
    """Names mxnet 1.9.1 reads from numpy at import time that numpy 2 removed (found by importing
    it, running a symbol forward, loading a checkpoint and building a gluon model). The financial
    functions were already stubs raising RuntimeError in numpy 1.20-1.26; they stay that."""
    aliases: dict[str, object] = {
        "PZERO": 0.0, "NZERO": -0.0, "PINF": math.inf, "NINF": -math.inf, "Inf": math.inf,
        "NAN": math.nan, "NaN": math.nan,
        "bool": bool,  # only if missing (numpy 2 has np.bool again, 1.24-1.26 had not)
        "alltrue": np.all, "sometrue": np.any, "product": np.prod, "round_": np.round,
        "in1d": lambda ar1, ar2, assume_unique=False, invert=False: np.isin(
            np.ravel(ar1), ar2, assume_unique=assume_unique, invert=invert),
        "msort": lambda a: np.sort(a, axis=0),
        "trapz": getattr(np, "trapezoid", None),
    }
    for name in ("mirr", "npv", "pmt", "ppmt", "pv", "rate"):
        aliases[name] = _financial_removed(name)
    return aliases


MXNET_NUMPY_ALIASES = ("PZERO", "NZERO", "PINF", "NINF", "Inf", "NAN", "NaN", "bool", "alltrue",
                       "sometrue", "product", "round_", "in1d", "msort", "trapz", "mirr", "npv",
                       "pmt", "ppmt", "pv", "rate")


def restore_numpy_aliases() -> list[str]:
    """Restores the numpy names mxnet needs, each only when missing; returns those set."""
    import numpy as np

    restored = []
    for name, value in _mxnet_numpy_aliases(np).items():
        if value is None:
            continue
        try:
            present = hasattr(np, name)
        except Exception:  # numpy's __getattr__ may raise something else for removed names
            present = False
        if not present:
            setattr(np, name, value)
            restored.append(name)
    return restored


def import_mxnet() -> ModuleType:
    try:
        restore_numpy_aliases()
    except Exception as err:
        raise _dependency_error("numpy", err) from err
    with warnings.catch_warnings():
        # mxnet 1.9.1 uses distutils' LooseVersion at import time: noise, not a problem
        warnings.simplefilter("ignore", DeprecationWarning)
        return _import("mxnet", "MXNet (import mxnet)")


# --------------------------------------------------------------------------- doctor

@dataclass
class Component:
    """One row of `caffezoo doctor`. `core` components are needed by the runtimes (info, demo,
    eval, time); the others only by convert/validate for that framework."""

    name: str
    version: str | None
    ok: bool
    detail: str  # what works, or why not and how to fix it
    core: bool = False


def _dist_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


# name -> (importer, distribution for the version, core, what it is used for)
_CHECKS: dict[str, tuple[str, str | None, bool, str]] = {
    "numpy": ("numpy", "numpy", True, "arrays"),
    # our generated schema module, run by the installed protobuf
    "protobuf": ("caffezoo.proto.caffe_pb2", "protobuf", True, "Caffe file formats"),
    "pycaffe": ("import_caffe", None, True, "the pycaffe runtime"),
    "opencv": ("import_cv2", "opencv-python-headless", True, "the OpenCV DNN runtime, images"),
    "torch": ("import_torch", "torch", False, "PyTorch conversion, the torch backend"),
    "torchvision": ("import_torchvision", "torchvision", False, "PyTorch model definitions"),
    "timm": ("import_timm", "timm", False, "PyTorch model definitions"),
    "torchfile": ("import_torchfile", "torchfile", False, "Lua Torch .t7 conversion"),
    "tensorflow": ("import_tensorflow", "tensorflow-cpu", False, "TF-slim conversion"),
    "tf_slim": ("import_tf_slim", "tf_slim", False, "TF-slim conversion"),
    "mxnet": ("import_mxnet", "mxnet", False, "MXNet conversion"),
    "onnx": ("import_onnx", "onnx", False, "ONNX conversion (onnx:, torchvision:, timm:)"),
    "onnxruntime": ("onnxruntime", "onnxruntime", False,
                    "the onnxruntime backend, ONNX validation"),
    "onnxslim": ("onnxslim", "onnxslim", False,
                 "ONNX clean-up of the exported backends' fused nets"),
    "openvino": ("import_openvino", "openvino", False,
                 "the openvino backend (optional extra 'openvino')"),
}


COMPONENTS = tuple(_CHECKS)


def check_component(name: str) -> Component:
    """Imports one component in this process and reports it."""
    importer, dist, core, used_for = _CHECKS[name]
    version = _dist_version(dist) if dist else None
    try:
        if importer.startswith("import_"):
            module = globals()[importer]()
        else:
            module = importlib.import_module(importer)
    except DependencyError as err:
        return Component(name, version, False, str(err), core)
    except Exception as err:
        return Component(name, version, False, str(_dependency_error(name, err)), core)
    if version is None:
        version = str(getattr(module, "__version__", "?"))
    if name == "pycaffe":
        used_for += f" ({Path(module.__file__).resolve().parents[2]})"
    return Component(name, version, True, used_for, core)


def _check_caffe_tool() -> Component:
    try:
        tool = caffe_tool()
    except DependencyError as err:
        return Component("caffe tool", None, False, str(err), True)
    try:
        env = dict(os.environ, GLOG_logtostderr="1", GLOG_minloglevel="0")
        proc = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=60,
                              env=env)
    except (OSError, subprocess.TimeoutExpired) as err:
        return Component("caffe tool", None, False, str(_dependency_error(tool, err)), True)
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        return Component("caffe tool", None, False,
                         str(_dependency_error(tool, out or f"exit {proc.returncode}")), True)
    version = out.split()[-1] if out else "?"
    return Component("caffe tool", version, True, f"{tool} (caffe time, caffe test)", True)


# Components checked in one interpreter: each group shares its framework's import (timm and
# torchvision import torch anyway), groups are isolated from each other.
_GROUPS = (("numpy", "protobuf"), ("pycaffe",), ("opencv",), ("torch", "torchvision", "timm"),
           ("torchfile",), ("tensorflow", "tf_slim"), ("mxnet",),
           ("onnx", "onnxruntime", "onnxslim"), ("openvino",))


def _check_in_subprocess(names: tuple[str, ...]) -> list[Component]:
    package_parent = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    code = ("import json, dataclasses, sys\n"
            "from caffezoo.frameworks import check_component\n"
            "for name in sys.argv[1:]:\n"
            "    print(json.dumps(dataclasses.asdict(check_component(name))), flush=True)\n")
    proc = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True,
                          env=env, timeout=300)
    rows = []
    for line in proc.stdout.splitlines():
        with contextlib.suppress(ValueError, TypeError):
            rows.append(Component(**json.loads(line)))
    why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    for name in names[len(rows):]:  # the interpreter died before reporting these
        _, dist, core, _ = _CHECKS[name]
        rows.append(Component(name, _dist_version(dist) if dist else None, False,
                              f"importing it crashed the interpreter ({why}); {FIX}", core))
    return rows


def components(names: list[str] | None = None, isolated: bool = True,
               jobs: int = 2, on_checked=None) -> list[Component]:
    """The doctor's table: the caffe tool, then `names` (default: all of COMPONENTS). With
    `isolated` each framework is imported in its own interpreter (`jobs` at a time), so one that
    crashes the process (a compiled module, a Caffe abort) cannot take the others along, and one
    framework's patch cannot make another look usable. `on_checked(rows)` is called as each
    check ends (a progress bar)."""
    done = on_checked or (lambda rows: None)
    names = list(COMPONENTS if names is None else names)
    unknown = [n for n in names if n not in _CHECKS]
    if unknown:
        raise ValueError(f"unknown components {unknown}; known: {', '.join(COMPONENTS)}")
    if isolated:
        groups = [tuple(n for n in g if n in names) for g in _GROUPS]
        groups += [(n,) for n in names if not any(n in g for g in _GROUPS)]
        def check(group: tuple[str, ...]) -> list[Component]:
            rows = _check_in_subprocess(group)
            done(rows)
            return rows

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            found = {r.name: r for rows in pool.map(check, filter(None, groups)) for r in rows}
        rows = [found[n] for n in names]
    else:
        rows = [check_component(n) for n in names]
        done(rows)
    return [_check_caffe_tool()] + rows
