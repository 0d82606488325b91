"""The MXNet NDArray-list reader (caffezoo/converters/mxnet/params.py), without MXNet: files
that MXNet 1.9.1 itself wrote (nd.save in both shape semantics, fp16/fp64, sparse, Gluon
save_parameters and export) and the older array versions, hand-written here byte by byte from
the documented layout, are read and compared with MXNet's own `nd.load` of the same file; broken
files (cut at every few bytes, wrong magics, absurd shapes, unknown dtypes) each give one
InputFileError naming the file."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from caffezoo.converters.mxnet import params as mp
from caffezoo.errors import InputFileError


def _list(arrays: list[bytes], names: list[str]) -> bytes:
    out = struct.pack("<QQ", mp.LIST_MAGIC, 0) + struct.pack("<Q", len(arrays)) + b"".join(arrays)
    out += struct.pack("<Q", len(names))
    for n in names:
        raw = n.encode()
        out += struct.pack("<Q", len(raw)) + raw
    return out


def _v2(arr: np.ndarray, flag: int = 0, magic: int = mp.V2_MAGIC) -> bytes:
    head = struct.pack("<Ii", magic, 0) + struct.pack("<i", arr.ndim)
    head += struct.pack(f"<{arr.ndim}q", *arr.shape)
    return head + struct.pack("<iii", 1, 0, flag) + arr.tobytes()


def _v1(arr: np.ndarray, flag: int = 0) -> bytes:
    head = struct.pack("<I", mp.V1_MAGIC) + struct.pack("<i", arr.ndim)
    head += struct.pack(f"<{arr.ndim}q", *arr.shape)
    return head + struct.pack("<iii", 1, 0, flag) + arr.tobytes()


def _v0(arr: np.ndarray, flag: int = 0) -> bytes:
    head = struct.pack("<I", arr.ndim) + struct.pack(f"<{arr.ndim}I", *arr.shape)
    return head + struct.pack("<iii", 1, 0, flag) + arr.tobytes()


A = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7
B = np.linspace(-1, 1, 5).astype(np.float64)


def test_hand_written_versions_read_as_written():
    data = _list([_v2(A), _v1(B, 1), _v0(A.astype(np.float16), 2)],
                 ["arg:w", "aux:m", "plain"])
    pf = mp.parse_params(data, "f.params")
    assert pf.versions == {"V0", "V1", "V2"}
    assert pf.dtypes == {"float32", "float64", "float16"}
    named = pf.by_name()
    np.testing.assert_array_equal(named["w"], A)
    np.testing.assert_array_equal(named["m"], B.astype(np.float32))
    np.testing.assert_array_equal(named["plain"], A.astype(np.float16).astype(np.float32))
    assert all(v.dtype == np.float32 for v in named.values())


def test_every_truncation_gives_one_clear_error():
    data = _list([_v2(A), _v1(B, 1)], ["arg:w", "aux:m"])
    for cut in range(0, len(data) - 1, 3):
        with pytest.raises(InputFileError, match=r"^cut\.params: "):
            mp.parse_params(data[:cut], "cut.params")
    with pytest.raises(InputFileError, match="after the last name"):
        mp.parse_params(data + b"\0", "long.params")


@pytest.mark.parametrize("patch, message", [
    (lambda d: struct.pack("<Q", 0x113) + d[8:], "not an MXNet NDArray file"),
    # the array magic of the first array, made into an absurd legacy ndim
    (lambda d: d[:24] + struct.pack("<I", 0xF993FA00) + d[28:], "unknown array magic"),
    # storage type 7
    (lambda d: d[:28] + struct.pack("<i", 7) + d[32:], "unknown storage type 7"),
    # a shape of 2^40 x 3 x 4: never allocated
    (lambda d: d[:36] + struct.pack("<q", 1 << 40) + d[44:], "absurd shape"),
    # a negative dimension
    (lambda d: d[:36] + struct.pack("<q", -5) + d[44:], "negative dimension"),
    # 70 dimensions
    (lambda d: d[:32] + struct.pack("<i", 70) + d[36:], "70 dimensions"),
    # dtype flag 99 (after magic, stype, ndim, 3 dims, device type and id)
    (lambda d: d[:68] + struct.pack("<i", 99) + d[72:], "unknown dtype flag 99"),
    # device type 9
    (lambda d: d[:60] + struct.pack("<i", 9) + d[64:], "unknown device type 9"),
    # an array count no file could hold
    (lambda d: d[:16] + struct.pack("<Q", 1 << 62) + d[24:], "cannot fit"),
])
def test_corrupt_headers_give_one_clear_error(patch, message):
    data = _list([_v2(A)], ["arg:w"])
    with pytest.raises(InputFileError, match=message) as err:
        mp.parse_params(patch(data), "bad.params")
    assert str(err.value).startswith("bad.params: ")
    assert "\n" not in str(err.value)


def test_name_count_and_duplicates_are_checked():
    with pytest.raises(InputFileError, match="2 names for 1 arrays"):
        mp.parse_params(_list([_v2(A)], ["a", "b"]), "n.params")
    with pytest.raises(InputFileError, match="appears twice"):
        mp.parse_params(_list([_v2(A), _v2(A)], ["a", "a"]), "n.params")


def test_missing_and_short_files(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        mp.read_params(tmp_path / "none.params")
    (tmp_path / "short.params").write_bytes(b"\x12\x01")
    with pytest.raises(InputFileError, match="short.params: .*16-byte header"):
        mp.read_params(tmp_path / "short.params")


# -- against MXNet's own reading of files MXNet wrote ---------------------------------------------


def _mx():
    from caffezoo.frameworks import import_mxnet

    return import_mxnet()


def _same_as_mxnet(mx, path, expect_versions):
    theirs = mx.nd.load(str(path))
    ours = mp.read_params(path)
    assert ours.versions == expect_versions
    if isinstance(theirs, list):
        theirs = {str(i): v for i, v in enumerate(theirs)}
    assert set(ours.arrays) == set(theirs)
    for key, value in theirs.items():
        if hasattr(value, "tostype"):
            value = value.tostype("default")
        ref = value.asnumpy()
        got = ours.arrays[key]
        assert got.shape == ref.shape, key
        np.testing.assert_array_equal(got, ref.astype(got.dtype), err_msg=key)


@pytest.mark.mxnet
def test_files_mxnet_writes(tmp_path):
    mx = _mx()
    rng = np.random.default_rng(0)
    arrays = {"arg:conv_weight": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
              "aux:bn_moving_var": rng.uniform(size=(4,)).astype(np.float32),
              "half": rng.normal(size=(2, 5)).astype(np.float16),
              "double": rng.normal(size=(3,)).astype(np.float64),
              "ints": np.arange(6, dtype=np.int32).reshape(2, 3)}
    path = tmp_path / "dict.params"
    mx.nd.save(str(path), {k: mx.nd.array(v, dtype=v.dtype) for k, v in arrays.items()})
    _same_as_mxnet(mx, path, {"V2"})
    # a list (no names), and sparse storage types
    dense = np.zeros((6, 4), np.float32)
    dense[[1, 4]] = rng.normal(size=(2, 4))
    path = tmp_path / "list.params"
    mx.nd.save(str(path), [mx.nd.array(dense).tostype("row_sparse"),
                           mx.nd.array(dense).tostype("csr"), mx.nd.array(dense)])
    _same_as_mxnet(mx, path, {"V2"})
    # NumPy shape semantics write V3, with a scalar
    path = tmp_path / "np.params"
    with mx.util.np_shape(True):
        mx.nd.save(str(path), {"s": mx.nd.array(np.float32(2.5).reshape(())),
                               "w": mx.nd.array(arrays["arg:conv_weight"])})
        theirs = mx.nd.load(str(path))
        ours = mp.read_params(path)
        assert ours.versions == {"V3"}
        for key in ("s", "w"):
            np.testing.assert_array_equal(ours.arrays[key], theirs[key].asnumpy())
        assert ours.arrays["s"].shape == ()


@pytest.mark.mxnet
def test_legacy_versions_mxnet_still_reads(tmp_path):
    """MXNet 1.9.1 cannot write V0/V1 arrays but still reads them: hand-written files, read by
    both."""
    mx = _mx()
    path = tmp_path / "old.params"
    path.write_bytes(_list([_v0(A), _v1(B, 1), _v0(A.astype(np.float16), 2)],
                           ["arg:a", "aux:b", "c"]))
    _same_as_mxnet(mx, path, {"V0", "V1"})


@pytest.mark.mxnet
def test_gluon_save_parameters_and_export(tmp_path):
    mx = _mx()
    from mxnet.gluon import nn

    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3, in_channels=3), nn.BatchNorm(in_channels=4), nn.Dense(2))
    net.initialize()
    net.hybridize()
    net(mx.nd.ones((1, 3, 8, 8)))
    net.save_parameters(str(tmp_path / "plain.params"))
    _same_as_mxnet(mx, tmp_path / "plain.params", {"V2"})
    assert "0.weight" in mp.read_params(tmp_path / "plain.params").arrays
    net.export(str(tmp_path / "exp"), epoch=7)
    _same_as_mxnet(mx, tmp_path / "exp-0007.params", {"V2"})
    names = mp.read_params(tmp_path / "exp-0007.params").arrays
    assert any(k.startswith("arg:") for k in names) and any(k.startswith("aux:") for k in names)


def _row_sparse(values: np.ndarray, rows: np.ndarray, dense: tuple[int, ...]) -> bytes:
    """A V2 row_sparse array: storage shape, dense shape, context, dtype, one aux (the rows)."""
    def shape(s):
        return struct.pack("<i", len(s)) + struct.pack(f"<{len(s)}q", *s)
    return (struct.pack("<Ii", mp.V2_MAGIC, 1) + shape(values.shape) + shape(dense)
            + struct.pack("<iii", 1, 0, 0) + struct.pack("<i", 6) + shape(rows.shape)
            + values.tobytes() + rows.tobytes())


def test_sparse_arrays_are_refused_beyond_the_memory_available(monkeypatch):
    """A sparse array stands for a dense one far larger than its bytes (within 64x the file):
    the dense size is checked against the memory available before it is allocated."""
    from caffezoo.errors import ResourceError

    values = np.arange(2 * 10, dtype=np.float32).reshape(2, 10)
    data = _list([_row_sparse(values, np.array([3, 7], np.int64), (1000, 10))], ["arg:e"])
    dense = mp.parse_params(data, "s.params").by_name()["e"]
    np.testing.assert_array_equal(dense[[3, 7]], values)
    assert dense.shape == (1000, 10) and not dense[[0, 1, 2, 4, 5, 6, 8, 9]].any()
    monkeypatch.setenv("CAFFEZOO_MEMORY_LIMIT", "20000")  # under the 40,000 bytes it needs
    with pytest.raises(ResourceError, match=r"s.params: array 0 \(sparse, dense shape "
                       r"\[1000, 10\]\) needs about .* of memory"):
        mp.parse_params(data, "s.params")
