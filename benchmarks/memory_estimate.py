"""caffezoo.memory's estimate for real Caffe against what Caffe's process really used: the peak
resident size (VmHWM) of the pycaffe runtime's child after a forward pass.

    scripts/run python benchmarks/memory_estimate.py resnext50_32x4d:224:8 inception_v3:299:4

Each argument is ZOO_NAME:INPUT_SIZE:BATCH; weights are seeded random (memory does not depend on
their values). The child's figure includes its interpreter and pycaffe (about 45 MiB); the
estimate includes caffezoo's own copy of the weights while loading (in this process).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np


def main(specs: list[str]) -> None:
    from caffezoo import analysis, memory, netio, zoo
    from caffezoo.random_weights import random_weights
    from caffezoo.runtimes import open_runtime

    print(f"{'net':<18} {'size':>4} {'batch':>5} {'estimate MiB':>13} {'child peak MiB':>15} "
          f"{'estimate / peak':>16}")
    for spec in specs:
        name, size, batch = spec.split(":")
        size, batch = int(size), int(batch)
        with tempfile.TemporaryDirectory() as tmp:
            proto, model = Path(tmp) / "n.prototxt", Path(tmp) / "n.caffemodel"
            net = zoo.get_card(name).build(size)
            netio.write_prototxt(net, proto)
            netio.write_caffemodel(netio.attach_weights(net, random_weights(net)), model)
            rt = open_runtime("pycaffe", proto, model)
            rt.forward(np.zeros((batch, 3, size, size), np.float32))
            status = Path(f"/proc/{rt._worker.proc.pid}/status").read_text()
            peak = int(status.split("VmHWM:")[1].split()[0]) * 1024
            stats = analysis.analyze(rt.checked.net, {rt.input_name: (batch, 3, size, size)})
            estimate = memory.net_bytes(stats, "pycaffe")
            rt.close()
        print(f"{name:<18} {size:>4} {batch:>5} {estimate / 2**20:>13.0f} {peak / 2**20:>15.0f} "
              f"{estimate / peak:>16.2f}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["resnext50_32x4d:224:8", "inception_v3:299:4"])
