"""A graph source plug-in for the CLI tests (registered by the tests themselves): `testgraph:NAME`
builds a small seeded classifier graph; its runner is the independent numpy implementation in
tests/helpers/graph_reference.py. A stand-in for the MXNet/ONNX front ends, which live on their
own."""

from __future__ import annotations

import graph_reference
import numpy as np

from caffezoo.contract import InputContract
from caffezoo.errors import InputFileError
from caffezoo.graph.ir import Graph, Node

NORM = InputContract(channel_order="RGB", pixel_scale=1.0, mean=(0.485, 0.456, 0.406),
                     std=(0.229, 0.224, 0.225))


def read_graph(spec: str, input_shape=None) -> Graph:
    shape = tuple(input_shape or (1, 3, 32, 32))
    rng = np.random.default_rng(abs(hash(spec)) % 2**32 if spec != "tiny" else 3)

    def w(*s):
        return (rng.normal(size=s) * 0.3).astype(np.float32)

    nodes = [
        Node("conv1", "conv", ["data"], ["conv1:0"], {"stride": (2, 2), "pads": (0, 0, 1, 1)},
             {"weight": w(8, 3, 3, 3)}, "Conv"),
        Node("bn1", "batch_norm", ["conv1:0"], ["bn1:0"], {"eps": 1e-3},
             {"mean": w(8), "var": np.abs(w(8)) + 0.5, "gamma": w(8), "beta": w(8)},
             "BatchNormalization"),
        Node("act1", "hard_swish", ["bn1:0"], ["act1:0"], {}, {}, "HardSwish"),
        Node("pool1", "avg_pool", ["act1:0"], ["pool1:0"],
             {"kernel": (3, 3), "stride": (2, 2), "pads": (1, 1, 1, 1),
              "count_include_pad": False}, {}, "AveragePool"),
        Node("gap", "global_avg_pool", ["pool1:0"], ["gap:0"], {}, {}, "GlobalAveragePool"),
        Node("flat", "flatten", ["gap:0"], ["flat:0"], {"axis": 1}, {}, "Flatten"),
        Node("fc", "linear", ["flat:0"], ["logits"], {}, {"weight": w(10, 8), "bias": w(10)},
             "Gemm"),
    ]
    if spec == "unsupported":
        nodes.insert(1, Node("roi", "roi_align", ["conv1:0"], ["roi:0"], {}, {}, "RoiAlign"))
    elif spec != "tiny":
        raise InputFileError(f"{spec}: no such test graph")
    return Graph(spec, {"data": shape}, ["logits"], nodes,
                 notes=["test front end: nothing folded"])


class Runner:
    def __init__(self, spec: str, input_shape) -> None:
        self.graph = read_graph(spec, input_shape)
        (self.input_shape,) = self.graph.inputs.values()
        self.input_norm = NORM

    def run(self, x, record=None):
        values = graph_reference.run(self.graph, x)
        keep = set(self.graph.outputs) | (set(record or ()) & set(values))
        return {k: v.astype(np.float32) for k, v in values.items() if k in keep}


def open_graph_runner(spec: str, input_shape) -> Runner:
    return Runner(spec, input_shape)
