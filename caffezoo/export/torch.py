"""Caffe -> a PyTorch `nn.Module` with Caffe's semantics exactly (the rules in
caffezoo/export/onnx.py's docstring hold here too), and a file format that loads safely.

    module = to_torch(export_net)                  # CaffeNet, on the CPU
    out = module(x)                                # the net's output blob (a dict if several)
    blobs = module.blobs(x, ["conv1", "prob"])     # any blobs, by Caffe name
    save(module, "net.pt", contract)               # atomic
    module = load("net.pt")                        # on CUDA when available, else the CPU
    module.contract                                # its InputContract, or None

The file is what `torch.save` writes for a dict of the prototxt text, the module's
state_dict and the net's input contract as JSON (when it has one); `load` reads it with
`torch.load(..., weights_only=True)` (no pickled code runs) and rebuilds the module from the
prototxt. Any batch size runs; height and width are the exported ones (pooling divisors are
precomputed for them).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from caffezoo import analysis as _analysis
from caffezoo import frameworks, netio
from caffezoo.errors import FormatError
from caffezoo.export import export_net
from caffezoo.export.export_net import ExportNet

FORMAT = "caffezoo.export.torch"
# Every layer type with a torch rule (Input and Silence produce no module).
TYPES = frozenset(("Convolution", "Deconvolution", "Pooling", "InnerProduct", "BatchNorm",
                   "Scale", "Bias", "Eltwise", "Concat", "Slice", "Split", "Dropout", "Flatten",
                   "Reshape", "Softmax", "PReLU", "LRN", "Crop", "MVN", "Permute", "ReLU",
                   "ReLU6", "Clip", "Swish", "Sigmoid", "TanH", "AbsVal", "BNLL", "ELU",
                   "Threshold", "Power", "Exp", "Log", "HardSigmoid", "HardSwish"))
VERSION = 1


def to_torch(ex: ExportNet):
    """The `CaffeNet` module of `ex` (float32, CPU, eval mode)."""
    return _module_class()(ex)


def save(module, path: str | Path, contract=None) -> None:
    """Writes `module` (a CaffeNet) as prototxt text + state_dict, and `contract` (the net's
    InputContract) as JSON, atomically."""
    torch = frameworks.import_torch()
    payload = {"format": FORMAT, "version": VERSION, "prototxt": module.prototxt,
               "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()}}
    if contract is not None:
        payload["contract"] = contract.to_json()
    # serialised in memory first: torch's zip writer reports a full disk as "unexpected pos"
    # (a RuntimeError); the file write below reports it as the OS does, naming the file
    buf = io.BytesIO()
    torch.save(payload, buf)
    netio.atomic_write(path, buf.getvalue())


def load(path: str | Path, device=None):
    """The CaffeNet saved in `path`, in eval mode, on `device` (default: CUDA when available,
    else the CPU). Reads with weights_only=True: the file cannot run code."""
    torch = frameworks.import_torch()
    data = netio.read_bytes(path, "caffezoo torch file")
    import io

    try:
        payload = frameworks.load_torch_weights(io.BytesIO(data))
    except ValueError as err:
        raise FormatError(f"{path}: not a caffezoo torch file ({err})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise FormatError(f"{path}: not a caffezoo torch file (written by "
                          "caffezoo export --to torch)")
    if payload.get("version") != VERSION:
        raise FormatError(f"{path}: caffezoo torch file version {payload.get('version')}, "
                          f"this caffezoo reads version {VERSION}")
    net = netio.parse_prototxt(payload["prototxt"], f"{path} (prototxt)")
    stats = _analysis.analyze(net)
    zeros = {s.name: [np.zeros(shape, np.float32) for shape in s.param_shapes]
             for s in stats.layers if s.param_shapes}
    module = to_torch(export_net.prepare(net, zeros, str(path)))
    try:
        module.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as err:
        raise FormatError(f"{path}: weights do not fit its prototxt "
                          f"({str(err).splitlines()[0]})") from None
    module.contract = _contract(payload, path)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return module.to(device).eval()


def _contract(payload: dict, path) -> object:
    """The InputContract a torch file carries, or None (a bare prototxt's export)."""
    import json

    from caffezoo.contract import InputContract

    text = payload.get("contract")
    if text is None:
        return None
    try:
        data = json.loads(text)
    except (TypeError, json.JSONDecodeError) as err:
        raise FormatError(f"{path}: its input contract is not JSON ({err})") from None
    return InputContract.from_dict(data, f"{path} (input contract)")


def _module_class():
    """CaffeNet, from export/torch_modules.py: imported on first use, so that importing this
    module does not import torch."""
    from caffezoo.export import torch_modules

    assert set(torch_modules.LAYER_CLASSES) == TYPES
    return torch_modules.CaffeNet
