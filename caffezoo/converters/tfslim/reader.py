"""TF-slim checkpoints as checkpoints: variables read with TensorFlow's checkpoint reader (no
model needed, nothing executed), named as slim names them.

SPEC is a checkpoint prefix (`model.ckpt-NNNN`, whose `.index` and `.data-*` files sit beside
it; the `.index` file itself is accepted too) or a folder with a `checkpoint` file naming its
latest prefix. `SLIM_NAMING` tells the handlers where a module's canonical parameters are:
`<scope>/weights` (HWIO, or (in, out) for fully_connected), `<scope>/biases`,
`<scope>/BatchNorm/moving_mean`, ... and turns them into OIHW / (out, in).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from caffezoo.converters.common import Checkpoint, ParamNaming, Part
from caffezoo.errors import InputFileError

FORMAT = "tf-slim"
# training-only variables a released or training checkpoint may carry
TRAINING_SUFFIXES = ("global_step", "/ExponentialMovingAverage", "/Momentum", "/RMSProp",
                     "/RMSProp_1", "/Adam", "/Adam_1")


def _canonical(part: str, arr: np.ndarray) -> np.ndarray:
    if part == Part.WEIGHT and arr.ndim == 4:  # conv2d: (kH, kW, in, out)
        return arr.transpose(3, 2, 0, 1)
    if part == Part.WEIGHT and arr.ndim == 2:  # fully_connected: (in, out)
        return arr.T
    return arr


SLIM_KEYS = {Part.WEIGHT: "{m}/weights", Part.BIAS: "{m}/biases",
             Part.MEAN: "{m}/moving_mean", Part.VAR: "{m}/moving_variance",
             Part.GAMMA: "{m}/gamma", Part.BETA: "{m}/beta"}
SLIM_NAMING = ParamNaming(SLIM_KEYS, _canonical, ignored_suffixes=TRAINING_SUFFIXES)
# slim.batch_norm(scale=False), the Inceptions': no gamma variable, gamma is one
SLIM_NAMING_NO_GAMMA = ParamNaming(SLIM_KEYS, _canonical, defaults={Part.GAMMA: 1.0},
                                   ignored_suffixes=TRAINING_SUFFIXES)


def _tf():
    from caffezoo.frameworks import import_tensorflow

    return import_tensorflow()


def checkpoint_prefix(spec: str | Path) -> str:
    """The checkpoint prefix SPEC names (see the module doc), or InputFileError."""
    path = Path(spec)
    if path.is_dir():
        if not (path / "checkpoint").is_file():
            raise InputFileError(f"{path}: a folder without a 'checkpoint' file (give the "
                                 "checkpoint prefix, e.g. model.ckpt-1000)")
        prefix = _tf().train.latest_checkpoint(str(path))
        if prefix is None or not Path(prefix + ".index").is_file():
            raise InputFileError(f"{path}/checkpoint names no checkpoint whose .index exists")
        return prefix
    if path.suffix == ".index" and path.is_file():
        return str(path.with_suffix(""))
    if Path(str(path) + ".index").is_file():
        return str(path)
    raise InputFileError(f"{path}: no such TF checkpoint ({path}.index not found)")


def read_checkpoint(spec: str | Path) -> Checkpoint:
    """Every float variable of the checkpoint as float32 arrays, by slim name."""
    tf = _tf()
    prefix = checkpoint_prefix(spec)
    try:
        reader = tf.train.load_checkpoint(prefix)
        shapes = reader.get_variable_to_shape_map()
        dtypes = reader.get_variable_to_dtype_map()
        tensors = {name: np.asarray(reader.get_tensor(name), np.float32)
                   for name in sorted(shapes) if dtypes[name].is_floating}
    except Exception as err:  # DataLossError, NotFoundError, ... on damaged files
        first = " ".join(str(err).split())[:200] or type(err).__name__
        raise InputFileError(f"{prefix}: not a readable TF checkpoint ({first})") from None
    if not tensors:
        raise InputFileError(f"{prefix}: no float variables in the checkpoint")
    return Checkpoint(prefix, FORMAT, tensors, naming=SLIM_NAMING)


def with_naming(ckpt: Checkpoint, has_gamma: bool) -> Checkpoint:
    return replace(ckpt, naming=SLIM_NAMING if has_gamma else SLIM_NAMING_NO_GAMMA)


def top_scope(ckpt: Checkpoint) -> str:
    """The model scope most variables live under (InceptionV4, resnet_v2_101, ...)."""
    counts: dict[str, int] = {}
    for name in ckpt.tensors:
        scope = name.split("/", 1)[0]
        counts[scope] = counts.get(scope, 0) + 1
    return max(counts, key=counts.get)
