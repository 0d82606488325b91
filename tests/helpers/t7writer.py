"""A small writer of Lua Torch7 binary serialisation (.t7), for test fixtures only.

Lua Torch cannot run here, so tests build fb.resnet.torch-style module trees from a PyTorch
model's weights and write them in the format `torch.save` produced (binary, 8-byte longs), so that
caffezoo's .t7 reader (through torchfile) is exercised on real-format files. Written from the
format description (object type tags, reference indices, "V 1" class versions, tensor = sizes,
strides, 1-based storage offset, storage), not from Torch's source.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TYPE_NIL, TYPE_NUMBER, TYPE_STRING, TYPE_TABLE, TYPE_TORCH, TYPE_BOOLEAN = 0, 1, 2, 3, 4, 5

_TENSOR_CLASSES = {
    np.dtype(np.float32): ("torch.FloatTensor", "torch.FloatStorage"),
    np.dtype(np.float64): ("torch.DoubleTensor", "torch.DoubleStorage"),
    np.dtype(np.int64): ("torch.LongTensor", "torch.LongStorage"),
}


@dataclass
class LuaObject:
    """A Torch class instance (an nn module): class name and its field table."""

    cls: str
    fields: dict = field(default_factory=dict)


@dataclass
class Storage:
    """A bare torch.*Storage (nn.View keeps its size as a LongStorage)."""

    data: np.ndarray


class _Writer:
    def __init__(self) -> None:
        self.out = bytearray()
        self.next_index = 1

    def int(self, v: int) -> None:
        self.out += struct.pack("<i", v)

    def long(self, v: int) -> None:
        self.out += struct.pack("<q", v)

    def string(self, s: str | bytes) -> None:
        data = s.encode() if isinstance(s, str) else s
        self.int(len(data))
        self.out += data

    def _ref(self) -> None:
        self.int(self.next_index)
        self.next_index += 1

    def obj(self, v) -> None:
        if v is None:
            self.int(TYPE_NIL)
        elif isinstance(v, bool):
            self.int(TYPE_BOOLEAN)
            self.int(1 if v else 0)
        elif isinstance(v, int | float):
            self.int(TYPE_NUMBER)
            self.out += struct.pack("<d", float(v))
        elif isinstance(v, str | bytes):
            self.int(TYPE_STRING)
            self.string(v)
        elif isinstance(v, np.ndarray):
            self.tensor(v)
        elif isinstance(v, Storage):
            self.storage(np.ascontiguousarray(v.data))
        elif isinstance(v, LuaObject):
            self.int(TYPE_TORCH)
            self._ref()
            self.string("V 1")
            self.string(v.cls)
            self.obj(dict(v.fields))
        elif isinstance(v, list | tuple):
            # Lua arrays are tables with keys 1..n
            self.obj({i + 1: item for i, item in enumerate(v)})
        elif isinstance(v, dict):
            self.int(TYPE_TABLE)
            self._ref()
            self.int(len(v))
            for key, item in v.items():
                self.obj(key)
                self.obj(item)
        else:
            raise TypeError(f"cannot write {type(v).__name__} to .t7")

    def tensor(self, a: np.ndarray) -> None:
        a = np.ascontiguousarray(a)
        tensor_cls = _TENSOR_CLASSES[a.dtype][0]
        self.int(TYPE_TORCH)
        self._ref()
        self.string("V 1")
        self.string(tensor_cls)
        self.int(a.ndim)
        for s in a.shape:
            self.long(s)
        for s in a.strides:
            self.long(s // a.itemsize)
        self.long(1)  # storage offset, 1-based
        self.storage(a)

    def storage(self, a: np.ndarray) -> None:
        self.int(TYPE_TORCH)
        self._ref()
        self.string("V 1")
        self.string(_TENSOR_CLASSES[a.dtype][1])
        self.long(a.size)
        self.out += a.tobytes()


def dumps(obj) -> bytes:
    w = _Writer()
    w.obj(obj)
    return bytes(w.out)


def save(obj, path: str | Path) -> None:
    Path(path).write_bytes(dumps(obj))


# --- fb.resnet.torch-style module trees -------------------------------------------------------


def _f32(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def conv(m, cudnn: bool = True) -> LuaObject:
    """(cudnn.)SpatialConvolution from a torch.nn.Conv2d."""
    fields = {
        "nInputPlane": m.in_channels, "nOutputPlane": m.out_channels,
        "kW": m.kernel_size[1], "kH": m.kernel_size[0], "dW": m.stride[1], "dH": m.stride[0],
        "padW": m.padding[1], "padH": m.padding[0], "weight": _f32(m.weight),
        "gradWeight": np.zeros((0,), np.float32), "train": False,
    }
    if m.bias is not None:
        fields["bias"] = _f32(m.bias)
    if cudnn:
        fields["groups"] = m.groups
    elif m.groups != 1:
        raise ValueError("nn.SpatialConvolution has no groups; use cudnn")
    return LuaObject("cudnn.SpatialConvolution" if cudnn else "nn.SpatialConvolution", fields)


def batchnorm(m, running_std: bool = False) -> LuaObject:
    """nn.SpatialBatchNormalization; running_std=True writes the pre-2016 form that stored
    1/sqrt(var + eps) instead of the variance."""
    fields = {"eps": m.eps, "momentum": m.momentum, "affine": True, "train": False,
              "weight": _f32(m.weight), "bias": _f32(m.bias),
              "running_mean": _f32(m.running_mean)}
    if running_std:
        fields["running_std"] = (1.0 / np.sqrt(m.running_var.double().numpy() + m.eps)).astype(
            np.float32)
    else:
        fields["running_var"] = _f32(m.running_var)
    return LuaObject("nn.SpatialBatchNormalization", fields)


def relu() -> LuaObject:
    return LuaObject("cudnn.ReLU", {"inplace": True, "train": False})


def seq(*mods) -> LuaObject:
    return LuaObject("nn.Sequential", {"modules": list(mods), "train": False})


def resnet_tree(model, pool_kernel: int, cudnn: bool = True) -> LuaObject:
    """An fb.resnet.torch / ResNeXt-Lua style nn.Sequential for a torchvision ResNet.

    Blocks are Sequential(ConcatTable(main, shortcut), CAddTable, ReLU); the head is a fixed
    SpatialAveragePooling(pool_kernel) (as the Lua models do: 7 at 224), View and Linear.
    """
    mods = [conv(model.conv1, cudnn), batchnorm(model.bn1), relu(),
            LuaObject("nn.SpatialMaxPooling", {"kW": 3, "kH": 3, "dW": 2, "dH": 2, "padW": 1,
                                               "padH": 1, "ceil_mode": False})]
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        blocks = []
        for blk in stage:
            main = seq(conv(blk.conv1, cudnn), batchnorm(blk.bn1), relu(),
                       conv(blk.conv2, cudnn), batchnorm(blk.bn2), relu(),
                       conv(blk.conv3, cudnn), batchnorm(blk.bn3))
            if blk.downsample is None:
                shortcut = LuaObject("nn.Identity", {})
            else:
                shortcut = seq(conv(blk.downsample[0], cudnn), batchnorm(blk.downsample[1]))
            blocks.append(seq(LuaObject("nn.ConcatTable", {"modules": [main, shortcut]}),
                              LuaObject("nn.CAddTable", {"inplace": True}), relu()))
        mods.append(seq(*blocks))
    nfeat = model.fc.in_features
    mods += [
        LuaObject("cudnn.SpatialAveragePooling",
                  {"kW": pool_kernel, "kH": pool_kernel, "dW": 1, "dH": 1, "padW": 0,
                   "padH": 0, "ceil_mode": False, "count_include_pad": True}),
        LuaObject("nn.View", {"size": Storage(np.array([nfeat], np.int64)), "numElements": nfeat}),
        LuaObject("nn.Linear", {"weight": _f32(model.fc.weight), "bias": _f32(model.fc.bias)}),
    ]
    return seq(*mods)


def main(argv: list[str] | None = None) -> int:
    """`python tests/helpers/t7writer.py MODEL OUT.t7 [--seed S] [--size N]`: a Lua Torch .t7
    file of a seeded random torchvision model (resnext50_32x4d, wrn50_2, resnext101_64x4d),
    pooling sized for N-pixel inputs (7 at 224, as the Lua releases)."""
    import argparse

    from caffezoo.converters.pytorch import random_model

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("model")
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=224)
    args = p.parse_args(argv)
    model = random_model(args.model, "torchvision", args.seed)
    save(resnet_tree(model, pool_kernel=args.size // 32), args.out)
    print(f"{args.out}: {args.model} with seeded random weights (seed {args.seed})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
