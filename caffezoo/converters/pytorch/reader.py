"""PyTorch state_dict files and Lua Torch .t7 models as checkpoints.

`torch.load(..., weights_only=True)`, so a file can never run code; a `state_dict`/`model`
entry and DataParallel's `module.` prefix are unwrapped. A `.t7` file goes through
pytorch/lua.py, which names its tensors as torchvision does. `TORCH_NAMING` tells the handlers
where a module's canonical parameters are: `<module>.weight`, `.running_mean`, ...
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from caffezoo.converters.common import Checkpoint, ParamNaming, Part
from caffezoo.errors import InputFileError

STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict")
TORCH_NAMING = ParamNaming(
    {Part.WEIGHT: "{m}.weight", Part.BIAS: "{m}.bias", Part.MEAN: "{m}.running_mean",
     Part.VAR: "{m}.running_var", Part.GAMMA: "{m}.weight", Part.BETA: "{m}.bias"},
    ignored_suffixes=(".num_batches_tracked",))  # a counter no inference net needs
def load_pytorch(path: str | Path) -> Checkpoint:
    """A PyTorch state_dict file as float32 arrays (integer buffers kept as they are)."""
    from caffezoo.frameworks import import_torch, load_torch_weights

    torch = import_torch()
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    try:
        obj = load_torch_weights(str(path))
    except ValueError as err:
        raise InputFileError(f"{path}: not a weights-only PyTorch checkpoint ({err})"
                             ) from None
    seen = 0
    while isinstance(obj, Mapping) and seen < 3:
        inner = next((obj[k] for k in STATE_DICT_KEYS
                      if k in obj and isinstance(obj[k], Mapping)), None)
        if inner is None:
            break
        obj, seen = inner, seen + 1
    if not isinstance(obj, Mapping):
        raise InputFileError(f"{path}: holds a {type(obj).__name__}, not a state_dict")
    tensors: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        if isinstance(value, torch.Tensor):
            arr = value.detach().cpu()
            arr = arr.float() if arr.is_floating_point() else arr
            tensors[str(key)] = arr.numpy()
    if not tensors:
        raise InputFileError(f"{path}: no tensors in the checkpoint")
    if all(k.startswith("module.") for k in tensors):  # saved from DataParallel
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return Checkpoint(str(path), "pytorch", tensors, naming=TORCH_NAMING)


def is_lua(path: str | Path) -> bool:
    return str(path).lower().endswith(".t7")


def load_checkpoint(path: str | Path) -> tuple[Checkpoint, Any]:
    """(checkpoint, Lua module tree or None) for a .pth/.pt/.bin or a .t7 file."""
    if is_lua(path):
        from caffezoo.converters.pytorch import lua

        return lua.read_checkpoint(path, TORCH_NAMING)
    return load_pytorch(path), None
