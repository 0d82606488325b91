"""Ways of running a Caffe net: one `Runtime` interface, four implementations.

    rt = open_runtime("pycaffe", "deploy.prototxt", "weights.caffemodel", threads=2)
    out = rt.forward(batch)                    # {"prob": (N, 1000) float32}
    out = rt.forward(batch, ["conv1", "prob"])  # any named blob

- ``pycaffe``: real Caffe through its Python module (`caffe.Net`, TEST phase).
- ``opencv``: OpenCV's DNN module (`cv2.dnn.readNetFromCaffe`, OpenCV backend, CPU target).
- ``onnxruntime``, ``openvino``, ``torch``: the net exported in memory by caffezoo.export
  (Caffe's semantics exactly; fused for the net's outputs, runtimes/exported.py), run by ONNX
  Runtime, OpenVINO or PyTorch.
- ``auto``: the fastest of them that is exact on this net, by a short measured probe cached per
  net and machine (runtimes/auto.py).

All take an NCHW float32 batch (any batch size; channels, height and width as declared by the
net's one input) and return float32 copies. Blob semantics are Caffe's: the value of a blob
*after the whole forward pass*, so for a blob that in-place layers rewrite (`conv1` followed by
ReLU `relu1` with `top: conv1`) you get the value after the last of them. OpenCV names outputs by
layer, so its runtime asks for the last layer that writes the blob (docs/runtimes.md).

Files are checked by caffezoo before any of it reaches Caffe, whose parser and shape checks
abort the whole process (glog CHECK) on bad input: the prototxt is read with `netio` (line and
column of syntax errors), its shapes inferred with `analysis` (layer named; it also refuses what
Caffe's CHECKs would: blobs of 2^31 values or more, layers that cannot run in place, wrong top
counts), the weights read and matched blob by blob. Caffe and OpenCV then get the net re-written
by us in the `ceil_mode` dialect, with only the TEST-phase layers and without `engine` settings
(CUDNN would abort a CPU build; the engine does not change the result). Real Caffe also runs in
a child process (runtimes/pycaffe.py), so that anything the checks miss still cannot take
caffezoo down with it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from caffezoo import analysis as _analysis
from caffezoo import limits, netio
from caffezoo.errors import CaffezooError, NetDefinitionError, WeightMismatchError

BACKENDS = ("pycaffe", "opencv", "onnxruntime", "openvino", "torch")
# `auto` is not a fixed order: the fastest exact one for the net, by a measured probe (auto.py)
_IMPORTS = {"pycaffe": "caffe", "opencv": "cv2", "onnxruntime": "onnxruntime",
            "openvino": "openvino", "torch": "torch"}


def installed_backends() -> tuple[str, ...]:
    """Every runtime whose framework is installed (found without importing it)."""
    import importlib.util

    return tuple(b for b in BACKENDS if importlib.util.find_spec(_IMPORTS[b]) is not None)


def can_use_gpu(backend: str) -> bool:
    """Whether `backend` runs on a GPU when one is visible to it: torch built with CUDA
    (runtimes/torch.py takes CUDA when torch sees a device), onnxruntime with its CUDA provider
    installed, OpenVINO when it sees a GPU (its GPU plugin). Caffe and OpenCV run on the CPU
    here. Used to ask Ray for GPUs per worker."""
    import importlib.util

    if backend == "torch" and importlib.util.find_spec("torch") is not None:
        from caffezoo.frameworks import import_torch

        return bool(import_torch().backends.cuda.is_built())
    if backend == "onnxruntime" and importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        return "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    if backend == "openvino" and importlib.util.find_spec("openvino") is not None:
        from caffezoo.frameworks import import_openvino
        from caffezoo.runtimes.openvino import device

        return device(import_openvino().Core()) == "GPU"
    return False


@dataclass
class CheckedNet:
    """A net as read and checked by caffezoo, ready to hand to a runtime."""

    prototxt: Path
    weights_path: Path | None
    net: netio.NetParameter  # TEST-phase layers only, modern form, no blobs
    analysis: _analysis.NetAnalysis
    # layer -> blobs, every layer covered; a runtime drops them once loaded (memory)
    weights: dict[str, list[np.ndarray]] | None
    input_name: str
    input_shape: tuple[int, ...]

    def text(self) -> str:
        """The prototxt that Caffe and OpenCV are given (ceil_mode dialect: both know it)."""
        return netio.format_prototxt(self.net, dialect="ceil_mode")

    def blob_names(self) -> list[str]:
        names: dict[str, None] = {self.input_name: None}
        for layer in self.net.layer:
            names.update(dict.fromkeys(layer.top))
        return list(names)

    def check_batch_size(self, n: int, backend: str = "pycaffe") -> None:
        """Re-infers shapes at batch size n (a Reshape layer with a fixed batch would make Caffe
        abort) and refuses a batch that would not fit in memory."""
        try:
            stats = _analysis.analyze(self.net, {self.input_name: (n, *self.input_shape[1:])})
        except CaffezooError as err:
            raise NetDefinitionError(f"{self.prototxt}: at batch size {n}: {err}") from None
        self.check_memory(stats, backend)

    def check_memory(self, stats: _analysis.NetAnalysis | None = None,
                     backend: str = "pycaffe") -> None:
        """ResourceError when running the net (default: at its declared batch) on `backend`
        would need more memory than is available (caffezoo.memory)."""
        from caffezoo import memory

        stats = stats or self.analysis
        batch = stats.inputs[self.input_name][0]
        memory.check(memory.net_bytes(stats, backend),
                     f"{self.prototxt} on {backend} at batch size {batch}")


def check_net(prototxt: str | Path, weights: str | Path | None = None) -> CheckedNet:
    """Read and check a prototxt (and weights) so that nothing malformed reaches a runtime."""
    prototxt = Path(prototxt)
    net = netio.read_prototxt(prototxt)  # InputFileError / FormatError with file:line:col
    try:
        stats = _analysis.analyze(net)
    except NetDefinitionError as err:
        raise NetDefinitionError(f"{prototxt}: {err}") from None
    included = {s.name for s in stats.layers}
    test_net = _analysis.test_phase_net(net, stats)
    for layer in test_net.layer:
        _clear_engine(layer)
    if len(stats.inputs) != 1:
        raise NetDefinitionError(f"{prototxt}: a runtime needs exactly one input blob, the net "
                                 f"has {len(stats.inputs)} ({', '.join(stats.inputs) or 'none'})")
    (input_name, input_shape), = stats.inputs.items()
    if len(input_shape) != 4:
        raise NetDefinitionError(f"{prototxt}: input '{input_name}' has shape {input_shape}, "
                                 "expected 4-D NCHW")
    blobs = None
    weights_path = None
    if weights is not None:
        weights_path = Path(weights)
        try:  # read_weights: InputFileError / FormatError
            blobs = netio.fit_weights(stats, netio.read_weights(weights_path))
        except WeightMismatchError as err:
            raise WeightMismatchError(f"{weights_path} does not fit {prototxt}: {err}") from None
        blobs = {k: v for k, v in blobs.items() if k in included}
    return CheckedNet(prototxt, weights_path, test_net, stats, blobs, input_name,
                      tuple(input_shape))


# Parameters with an `engine` (DEFAULT, CAFFE, CUDNN): which implementation runs, not what it
# computes. A CPU build of Caffe aborts on CUDNN ("unknown engine"), OpenCV ignores it.
_ENGINE_PARAMS = ("convolution_param", "pooling_param", "relu_param", "sigmoid_param",
                  "softmax_param", "tanh_param", "lrn_param")


def _clear_engine(layer) -> None:
    for name in _ENGINE_PARAMS:
        if layer.HasField(name):
            getattr(layer, name).ClearField("engine")


def check_for_caffe(checked: CheckedNet) -> None:
    """What a checked net must not contain for real Caffe on the CPU (pycaffe or the `caffe`
    tool), beyond what `check_net` verifies for every runtime: a failed CHECK or a
    NOT_IMPLEMENTED there aborts the process."""
    for layer in checked.net.layer:
        if layer.type == "Pooling" and layer.pooling_param.pool == 2:  # STOCHASTIC
            raise NetDefinitionError(
                f"{checked.prototxt}: layer '{layer.name}': STOCHASTIC pooling has no CPU "
                "implementation in Caffe (use --backend opencv, or MAX/AVE pooling)")


class Runtime(ABC):
    """A loaded net that runs batches. See the module docstring for the semantics."""

    backend: str = ""

    def __init__(self, checked: CheckedNet, threads: int | None = None) -> None:
        self.checked = checked
        self.threads = threads
        self._checked_sizes: set[int] = {checked.input_shape[0]}

    @property
    def input_name(self) -> str:
        return self.checked.input_name

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The declared input shape (N, C, H, W); forward accepts any N."""
        return self.checked.input_shape

    @property
    def output_names(self) -> list[str]:
        """The net's outputs: blobs no later layer consumes (e.g. ['prob']), and those only a
        Silence layer reads."""
        return self.checked.analysis.results

    def blob_names(self) -> list[str]:
        """Every blob the prototxt names, input first, in the order they are produced."""
        return self.checked.blob_names()

    def check_batch_size(self, n: int) -> None:
        """Refuses a batch of `n` this runtime cannot run: shapes (a Reshape with a fixed batch
        would make Caffe abort) and memory; once per batch size. `forward` calls it; callers
        that do other work per batch first (validation runs the source) call it before."""
        if n not in self._checked_sizes:
            self.checked.check_batch_size(n, self.backend)
            self._checked_sizes.add(n)

    def forward(self, batch: np.ndarray, outputs: Sequence[str] | None = None
                ) -> dict[str, np.ndarray]:
        """Runs the net on `batch` (N, C, H, W) and returns the requested blobs (default: the
        net's outputs) as float32 arrays that the caller owns."""
        batch = np.asarray(batch)
        want = (None, *self.input_shape[1:])
        if batch.ndim != 4 or tuple(batch.shape[1:]) != want[1:] or batch.shape[0] < 1:
            raise NetDefinitionError(
                f"{self.checked.prototxt}: input batch of shape {tuple(batch.shape)} does not fit "
                f"input '{self.input_name}' (N, {', '.join(map(str, want[1:]))})")
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        self.check_batch_size(batch.shape[0])
        if isinstance(outputs, str):
            raise TypeError("outputs must be a list of blob names")
        names = list(self.output_names if outputs is None else outputs)
        for name in names:
            if not self._has_blob(name):
                known = self.blob_names()
                raise NetDefinitionError(
                    f"{self.checked.prototxt}: no blob named '{name}' (blobs: "
                    f"{', '.join(known[:8])}{' ...' if len(known) > 8 else ''})")
        result = self._forward(batch, names)
        return {k: np.array(v, dtype=np.float32, copy=True) for k, v in result.items()}

    def _has_blob(self, name: str) -> bool:
        # the names once per runtime, not per request: a forward asking for the 27 outputs of
        # a converted ShuffleNetV2 (26 of them slices only a Silence reads) spent more time
        # listing the net's blobs than ONNX Runtime spent running it (31 against 13 ms)
        if getattr(self, "_blob_set", None) is None:
            self._blob_set = frozenset(self.checked.blob_names())
        return name in self._blob_set

    @abstractmethod
    def _forward(self, batch: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        ...

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.checked.prototxt} input {self.input_name}"
                f"{self.input_shape}>")


def open_runtime(backend: str, prototxt: str | Path, weights: str | Path | None = None,
                 threads: int | None = None, batch_size: int | None = None) -> Runtime:
    """Loads `prototxt` (+ `weights`) into the runtime `backend` (one of BACKENDS, or "auto":
    the fastest exact one for this net, measured at `batch_size` (default: the net's declared
    batch) by a short probe the first time, then cached: runtimes/auto.py).

    `threads` sets the backend's worker threads (OpenBLAS of pycaffe's child process;
    process-wide for opencv and torch: cv::setNumThreads, torch.set_num_threads; per session
    for onnxruntime; per compiled model for openvino); None leaves the library default."""
    if backend == "auto":
        from caffezoo.runtimes import auto

        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        return auto.open_fastest(prototxt, weights, threads, batch_size)
    if backend not in BACKENDS:
        raise ValueError(f"unknown runtime {backend!r}; choose one of {', '.join(BACKENDS)}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    limits.check_parallel("threads", threads)
    checked = check_net(prototxt, weights)
    checked.check_memory(backend=backend)
    if backend == "pycaffe":
        from caffezoo.runtimes.pycaffe import PyCaffeRuntime

        return PyCaffeRuntime(checked, threads)
    if backend == "onnxruntime":
        from caffezoo.runtimes.onnxruntime import OnnxRuntimeRuntime

        return OnnxRuntimeRuntime(checked, threads)
    if backend == "torch":
        from caffezoo.runtimes.torch import TorchRuntime

        return TorchRuntime(checked, threads)
    if backend == "openvino":
        from caffezoo.runtimes.openvino import OpenVINORuntime

        return OpenVINORuntime(checked, threads)
    from caffezoo.runtimes.opencv import OpenCVRuntime

    return OpenCVRuntime(checked, threads)
