"""The real-Caffe runtime: `caffe.Net` in TEST phase, CPU mode.

Caffe gets the net as caffezoo re-wrote it (a temporary prototxt) and the weights as the arrays
caffezoo already read and checked, copied into `net.params`: Caffe never parses a user's file, so
a malformed one cannot abort the process.

Threads: Caffe's CPU work is OpenBLAS GEMM (its other layers are single-threaded). OpenBLAS reads
OPENBLAS_NUM_THREADS once, when it is loaded by the first `import caffe`; `threads=` sets that
variable before the import and, when Caffe is already loaded, calls
`openblas_set_num_threads` on the loaded library. The setting is process-wide.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from caffezoo import frameworks
from caffezoo.errors import NetDefinitionError
from caffezoo.runtimes import CheckedNet, Runtime


class PyCaffeRuntime(Runtime):
    backend = "pycaffe"

    def __init__(self, checked: CheckedNet, threads: int | None = None) -> None:
        super().__init__(checked, threads)
        caffe = frameworks.import_caffe(threads=threads)
        if threads is not None:
            frameworks.set_blas_threads(threads)
        known = set(caffe.layer_type_list())
        for layer in checked.net.layer:
            if layer.type not in known:
                # Caffe's layer registry would abort the process (CHECK failure).
                raise NetDefinitionError(f"{checked.prototxt}: layer '{layer.name}': type "
                                         f"'{layer.type}' is not in this Caffe build")
        with tempfile.TemporaryDirectory(prefix="caffezoo-") as tmp:
            path = Path(tmp) / "net.prototxt"
            path.write_text(checked.text())
            self.net = caffe.Net(str(path), caffe.TEST)
        if checked.weights is not None:
            for name, blobs in checked.weights.items():
                targets = self.net.params[name]
                for target, blob in zip(targets, blobs, strict=True):
                    target.data[...] = blob
            checked.weights = None  # Caffe holds its own copy now; free ours
        self._batch = checked.input_shape[0]
        self._checked_sizes = {self._batch}

    def _has_blob(self, name: str) -> bool:
        # Caffe's own blobs too (e.g. the Split blobs it inserts for a blob used twice).
        return name in self.net.blobs

    def _forward(self, batch: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        n = batch.shape[0]
        if n != self._batch:
            if n not in self._checked_sizes:
                self.checked.check_batch_size(n)
                self._checked_sizes.add(n)
            self.net.blobs[self.input_name].reshape(*batch.shape)
            self.net.reshape()
            self._batch = n
        self.net.blobs[self.input_name].data[...] = batch
        self.net.forward()
        return {name: self.net.blobs[name].data.copy() for name in names}
