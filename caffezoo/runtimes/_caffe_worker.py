"""The child process that runs real Caffe for `PyCaffeRuntime` (runtimes/pycaffe.py).

Caffe ends the whole process on a failed CHECK (SIGABRT) or a crash: here that ends only this
child, and the parent reports it in one line. The protocol is a request/reply over two pipes;
each message is a frame:

    8 bytes little-endian header length, a JSON header, then the raw float32 bytes of each array
    the header lists under "arrays" ([name, shape] pairs), in that order.

Requests: {"op": "load", "prototxt": TEXT} + weights as arrays named "LAYER\\x00INDEX";
{"op": "forward", "names": [...]} + the batch. Replies: {"ok": ...} + arrays, or
{"error": MESSAGE}. Before each layer runs, the child writes its index into a small shared
file (argv[3]) so that the parent can name the layer of a crash. No pickle is involved.
"""

from __future__ import annotations

import json
import mmap
import os
import signal
import struct
import sys
import time
import types

import numpy as np

_LEN = struct.Struct("<Q")
MARK_BYTES = 8  # int32 phase (0 loading, 1 forwarding, 2 reshaping), int32 layer index


def write_all(fd: int, data) -> None:
    view = memoryview(data).cast("B")
    while view:
        n = os.write(fd, view)
        view = view[n:]


def read_exact(fd: int, n: int, into: memoryview | None = None) -> memoryview:
    buf = into if into is not None else memoryview(bytearray(n))
    got = 0
    while got < n:
        k = os.readv(fd, [buf[got:]])
        if k == 0:
            raise EOFError("pipe closed")
        got += k
    return buf


def send(fd: int, header: dict, arrays: list[tuple[str, np.ndarray]] = ()) -> None:
    arrays = [(name, np.ascontiguousarray(a, dtype=np.float32)) for name, a in arrays]
    header = dict(header, arrays=[[name, list(a.shape)] for name, a in arrays])
    head = json.dumps(header).encode("utf-8")
    write_all(fd, _LEN.pack(len(head)) + head)
    for _, a in arrays:
        if a.nbytes:
            write_all(fd, a)


def receive(fd: int) -> tuple[dict, dict[str, np.ndarray]]:
    (size,) = _LEN.unpack(read_exact(fd, _LEN.size))
    header = json.loads(bytes(read_exact(fd, size)).decode("utf-8"))
    arrays = {}
    for name, shape in header.pop("arrays", []):
        a = np.empty(shape, dtype=np.float32)
        if a.nbytes:
            read_exact(fd, a.nbytes, memoryview(a).cast("B"))
        arrays[name] = a
    return header, arrays


def _blas_threads() -> int | None:
    """Threads of the OpenBLAS that libcaffe uses (the system one, not numpy's copy)."""
    import ctypes

    try:
        return int(ctypes.CDLL("libopenblas.so.0").openblas_get_num_threads())
    except (OSError, AttributeError):
        return None


class _Worker:
    def __init__(self, mark: mmap.mmap) -> None:
        self.mark = mark
        self.net = None
        self.caffe = None

    def _set_mark(self, phase: int, index: int) -> None:
        self.mark[0:8] = struct.pack("<ii", phase, index)

    def load(self, header: dict, arrays: dict[str, np.ndarray]) -> dict:
        from caffezoo import frameworks

        # pycaffe's image helpers (caffe.io: scikit-image, scipy) are never used here and take
        # most of `import caffe`'s seconds: a stub stands in for them in this process.
        sys.modules.setdefault("caffe.io", types.ModuleType("caffe.io"))

        caffe = self.caffe = frameworks.import_caffe(quiet=False)
        known = set(caffe.layer_type_list())
        from caffezoo import netio

        net_param = netio.parse_prototxt(header["prototxt"])
        for layer in net_param.layer:
            if layer.type not in known:
                # Caffe's layer registry would abort (CHECK failure).
                return {"error": f"layer '{layer.name}': type '{layer.type}' is not in this "
                                 "Caffe build", "kind": "NetDefinitionError"}
        # Caffe reads the net from a path: an in-memory file, so nothing is left on disk.
        fd = os.memfd_create("caffezoo-net")
        try:
            write_all(fd, header["prototxt"].encode("utf-8"))
            self._set_mark(0, -1)
            self.net = caffe.Net(f"/proc/self/fd/{fd}", caffe.TEST)
        finally:
            os.close(fd)
        for key, blob in arrays.items():
            name, index = key.split("\x00")
            self.net.params[name][int(index)].data[...] = blob
        return {"ok": True, "blobs": list(self.net.blobs.keys()),
                "layers": list(self.net._layer_names), "blas_threads": _blas_threads()}

    def forward(self, header: dict, arrays: dict[str, np.ndarray]) -> tuple[dict, list]:
        net = self.net
        (batch,) = arrays.values()
        data = net.blobs[header["input"]]
        if tuple(data.data.shape) != batch.shape:
            self._set_mark(2, -1)
            data.reshape(*batch.shape)
            net.reshape()
        start = time.perf_counter()
        data.data[...] = batch
        for i in range(len(net.layers)):
            self._set_mark(1, i)
            net._forward(i, i)
        self._set_mark(1, -1)
        seconds = time.perf_counter() - start  # Caffe's own time, for the guard's benchmark
        return ({"ok": True, "seconds": seconds},
                [(name, net.blobs[name].data) for name in header["names"]])


def main(argv: list[str]) -> int:
    requests, replies, mark_fd = (int(a) for a in argv[1:4])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    worker = _Worker(mmap.mmap(mark_fd, MARK_BYTES))
    while True:
        try:
            header, arrays = receive(requests)
        except EOFError:  # the parent is done (or gone)
            return 0
        try:
            if header["op"] == "load":
                send(replies, worker.load(header, arrays))
            elif header["op"] == "forward":
                reply, out = worker.forward(header, arrays)
                send(replies, reply, out)
            else:
                send(replies, {"error": f"unknown request {header['op']!r}"})
        except Exception as err:  # reported to the parent, which raises it as one line
            from caffezoo.errors import CaffezooError

            kind = type(err).__name__
            text = str(err) if isinstance(err, CaffezooError) else f"{kind}: {err}"
            send(replies, {"error": text, "kind": kind})


if __name__ == "__main__":
    sys.exit(main(sys.argv))
