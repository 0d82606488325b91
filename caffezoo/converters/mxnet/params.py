"""MXNet's binary NDArray-list files (`PREFIX-NNNN.params`, Gluon `.params`, `nd.save`) read
without MXNet.

Layout (little-endian), as MXNet 0.x-1.9 write it:

    uint64 list magic 0x112, uint64 reserved
    uint64 count, then `count` arrays
    uint64 count of names (0 or the array count), then per name: uint64 length, UTF-8 bytes

One array starts with a uint32 that says its version:

- 0xF993FAC9 (V2, storage type) or 0xF993FACA (V3, NumPy shape semantics): int32 storage type
  (0 dense, 1 row_sparse, 2 csr); for sparse arrays the storage shape; the shape; for a shape
  that holds nothing (V2: ndim 0; V3: ndim -1 or an unknown dim) the array ends here; else
  context (int32 device type, int32 device id), int32 dtype flag, for sparse arrays the aux
  dtypes and shapes, then the raw data and the aux data (indices).
- 0xF993FAC8 (V1): shape, context, dtype flag, data.
- anything else (the oldest files): that uint32 is ndim, followed by ndim uint32 dims, then
  context, dtype flag and data as in V1.

A shape (V1-V3) is an int32 ndim followed by ndim int64 dims. V3 ndim 0 is a scalar.

Names carry `arg:` / `aux:` prefixes in Module checkpoints and `HybridBlock.export` files,
none in Gluon `save_parameters` files and plain `nd.save` dicts.

Every length is checked against the bytes left before anything is allocated, so a truncated or
corrupt file (or one with absurd shapes) raises one InputFileError naming the file.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from caffezoo.errors import InputFileError

LIST_MAGIC = 0x112
V1_MAGIC = 0xF993FAC8
V2_MAGIC = 0xF993FAC9
V3_MAGIC = 0xF993FACA
MAX_NDIM = 32  # MXNet refuses more dims than this anyway

# mshadow type flags -> numpy dtype (bfloat16 is decoded by hand)
DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"), 1: np.dtype("<f8"), 2: np.dtype("<f2"), 3: np.dtype("u1"),
    4: np.dtype("<i4"), 5: np.dtype("i1"), 6: np.dtype("<i8"), 7: np.dtype("?"),
    8: np.dtype("<i2"), 9: np.dtype("<u2"), 10: np.dtype("<u4"), 11: np.dtype("<u8"),
    12: np.dtype("<u2"),  # bfloat16: the high half of a float32
}
BFLOAT16 = 12
STORAGE = {0: "default", 1: "row_sparse", 2: "csr"}
DEVICES = {1: "cpu", 2: "gpu", 3: "cpu_pinned", 5: "cpu_shared"}


@dataclass
class ParamsFile:
    """The arrays of one file by name, as float32 (floating dtypes) or their integer dtype."""

    path: str
    arrays: dict[str, np.ndarray]  # name as stored (with any arg:/aux: prefix)
    versions: set[str] = field(default_factory=set)  # array format versions met ("V2", ...)
    dtypes: set[str] = field(default_factory=set)  # stored dtypes met ("float16", ...)

    def by_name(self) -> dict[str, np.ndarray]:
        """Arrays by plain name: `arg:`/`aux:` prefixes dropped."""
        out = {}
        for key, arr in self.arrays.items():
            prefix, sep, rest = key.partition(":")
            out[rest if sep and prefix in ("arg", "aux") else key] = arr
        return out


class _Reader:
    def __init__(self, data: bytes, path: str) -> None:
        self.data = data
        self.pos = 0
        self.path = path

    def fail(self, what: str) -> InputFileError:
        return InputFileError(f"{self.path}: not a valid MXNet NDArray file ({what}, at byte "
                              f"{self.pos} of {len(self.data)})")

    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or n > self.left():
            raise self.fail(f"truncated: {what} needs {n} bytes, {self.left()} left")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str):
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.take(size, what))

    def u32(self, what: str) -> int:
        return self.unpack("<I", what)[0]

    def i32(self, what: str) -> int:
        return self.unpack("<i", what)[0]

    def u64(self, what: str) -> int:
        return self.unpack("<Q", what)[0]

    def shape(self, what: str, np_semantics: bool) -> tuple[int, ...] | None:
        """int32 ndim + int64 dims; None for a shape that holds nothing."""
        ndim = self.i32(f"{what} ndim")
        if ndim == -1 and np_semantics:
            return None
        if ndim < 0 or ndim > MAX_NDIM:
            raise self.fail(f"{what} has {ndim} dimensions")
        dims = self.unpack(f"<{ndim}q", f"{what} dims") if ndim else ()
        if np_semantics and any(d == -1 for d in dims):
            return None
        if any(d < 0 for d in dims):
            raise self.fail(f"{what} {list(dims)} has a negative dimension")
        if ndim == 0 and not np_semantics:
            return None
        return tuple(int(d) for d in dims)

    def legacy_shape(self, ndim: int) -> tuple[int, ...] | None:
        if ndim > MAX_NDIM:
            raise self.fail(f"unknown array magic 0x{ndim:08X}")
        dims = self.unpack(f"<{ndim}I", "shape dims") if ndim else ()
        return tuple(int(d) for d in dims) if ndim else None

    def payload(self, shape: tuple[int, ...], flag: int, what: str) -> np.ndarray:
        dtype = DTYPES[flag]
        count = 1
        for d in shape:
            count *= d
            # checked as we go: the product of absurd dims never grows past the file
            if count * dtype.itemsize > self.left():
                raise self.fail(f"truncated or absurd shape: {what} {list(shape)} of "
                                f"{_dtype_name(flag)} needs more than the {self.left()} bytes "
                                f"left")
        raw = self.take(count * dtype.itemsize, what)
        arr = np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)
        if flag == BFLOAT16:
            return (arr.astype(np.uint32) << 16).view(np.float32).copy()
        if arr.dtype.kind == "f":
            return arr.astype(np.float32)
        return arr.astype(arr.dtype.newbyteorder("="))

    def context(self) -> None:
        dev_type = self.i32("context device type")
        self.i32("context device id")
        if dev_type not in DEVICES:
            raise self.fail(f"unknown device type {dev_type}")

    def dtype_flag(self, what: str) -> int:
        flag = self.i32(what)
        if flag not in DTYPES:
            raise self.fail(f"unknown dtype flag {flag}")
        return flag


def _dtype_name(flag: int) -> str:
    return "bfloat16" if flag == BFLOAT16 else DTYPES[flag].name


def _read_array(r: _Reader, index: int, out: ParamsFile) -> np.ndarray | None:
    what = f"array {index}"
    magic = r.u32(f"{what} magic")
    if magic in (V2_MAGIC, V3_MAGIC):
        np_sem = magic == V3_MAGIC
        out.versions.add("V3" if np_sem else "V2")
        stype = r.i32(f"{what} storage type")
        if stype not in STORAGE:
            raise r.fail(f"{what} has unknown storage type {stype}")
        sparse = stype != 0
        storage_shape = r.shape(f"{what} storage shape", np_sem) if sparse else None
        shape = r.shape(f"{what} shape", np_sem)
        if shape is None:
            return None
        r.context()
        flag = r.dtype_flag(f"{what} dtype")
        if not sparse:
            out.dtypes.add(_dtype_name(flag))
            return r.payload(shape, flag, what)
        naux = 1 if stype == 1 else 2
        aux = []
        for i in range(naux):
            aux_flag = r.dtype_flag(f"{what} aux {i} dtype")
            aux_shape = r.shape(f"{what} aux {i} shape", np_sem) or (0,)
            aux.append((aux_flag, aux_shape))
        out.dtypes.add(_dtype_name(flag))
        values = r.payload(storage_shape or (0,), flag, f"{what} values")
        indices = [r.payload(s, f, f"{what} aux {i}") for i, (f, s) in enumerate(aux)]
        return _densify(r, what, STORAGE[stype], shape, values, indices)
    if magic == V1_MAGIC:
        out.versions.add("V1")
        shape = r.shape(f"{what} shape", False)
    else:
        out.versions.add("V0")
        shape = r.legacy_shape(magic)
    if shape is None:
        return None
    r.context()
    flag = r.dtype_flag(f"{what} dtype")
    out.dtypes.add(_dtype_name(flag))
    return r.payload(shape, flag, what)


def _densify(r: _Reader, what: str, kind: str, shape: tuple[int, ...], values: np.ndarray,
             indices: list[np.ndarray]) -> np.ndarray:
    """A row_sparse or csr array as the dense array it stands for."""
    total = 1
    for d in shape:
        total *= d
    if total > 64 * max(len(r.data), 1 << 20):  # a dense result far larger than any model
        raise r.fail(f"{what}: sparse array of absurd dense shape {list(shape)}")
    from caffezoo import memory

    # within 64x the file, yet maybe more than this machine has: refused before allocating
    memory.check(total * values.dtype.itemsize,
                 f"{r.path}: {what} (sparse, dense shape {list(shape)})")
    dense = np.zeros(shape, values.dtype)
    try:
        if kind == "row_sparse":
            (rows,) = indices
            dense[rows.astype(np.int64)] = values.reshape((len(rows),) + shape[1:])
        else:
            indptr, cols = (i.astype(np.int64) for i in indices)
            if len(shape) != 2 or len(indptr) != shape[0] + 1:
                raise ValueError("bad csr index pointer")
            for row in range(shape[0]):
                lo, hi = indptr[row], indptr[row + 1]
                dense[row, cols[lo:hi]] = values[lo:hi]
    except (ValueError, IndexError) as err:
        raise r.fail(f"{what}: inconsistent {kind} indices ({err})") from None
    return dense


def parse_params(data: bytes, path: str = "<bytes>") -> ParamsFile:
    r = _Reader(data, path)
    if len(data) < 16:
        raise r.fail("shorter than the 16-byte header")
    magic, _reserved = r.unpack("<QQ", "header")
    if magic != LIST_MAGIC:
        raise InputFileError(f"{path}: not an MXNet NDArray file (magic 0x{magic:X}, expected "
                             f"0x{LIST_MAGIC:X})")
    out = ParamsFile(path, {})
    count = r.u64("array count")
    if count > r.left() // 4:  # every array takes at least its 4-byte magic
        raise r.fail(f"{count} arrays cannot fit in {r.left()} bytes")
    arrays = [_read_array(r, i, out) for i in range(count)]
    nnames = r.u64("name count")
    if nnames not in (0, count):
        raise r.fail(f"{nnames} names for {count} arrays")
    names = []
    for i in range(nnames):
        length = r.u64(f"name {i} length")
        raw = r.take(length, f"name {i}")
        try:
            names.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise r.fail(f"name {i} is not UTF-8") from None
    if r.left():
        raise r.fail(f"{r.left()} bytes after the last name")
    if not names:
        names = [str(i) for i in range(count)]  # nd.save of a list: arrays by position
    for name, arr in zip(names, arrays, strict=True):
        if name in out.arrays:
            raise InputFileError(f"{path}: array name {name!r} appears twice")
        if arr is not None:
            out.arrays[name] = arr
    return out


def read_params(path: str | Path) -> ParamsFile:
    """An NDArray-list file by name (see the module doc); InputFileError when it is missing,
    truncated or not such a file."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputFileError(f"{path}: cannot read ({err.strerror})") from None
    return parse_params(data, str(path))
