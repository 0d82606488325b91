"""The MXNet front end (symbol JSON of every era + params -> caffezoo.graph.ir.Graph), checked
against real MXNet 1.9.1 running the same files: every value of the graph, evaluated by an
independent float64 numpy implementation of the canonical ops (tests/helpers/graph_reference.py, the
emitter tests' reference), against the value of the same name from MXNet's `get_internals`.
The emitter and Caffe are tested with these graphs in tests/conversion/test_mxnet_convert.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from graph_reference import run as run_graph

from caffezoo.converters import mxnet as cm
from caffezoo.converters.mxnet import ops, symbol
from caffezoo.errors import ConversionError, InputFileError, WeightMismatchError

sys.path.insert(0, str(Path(__file__).parent))
from mxnet_nets import (  # noqa: E402
    every_op_symbol,
    random_params,
    residual_json_08,
    residual_json_attr_era,
    residual_symbol,
    save_checkpoint,
)


def _compare_with_mxnet(spec: str, shape, seed=0, tol=1e-4) -> dict[str, float]:
    """Every graph value MXNet also has, numpy-IR vs MXNet: relative errors by value."""
    graph = cm.read_graph(spec, shape)
    runner = cm.open_graph_runner(spec, shape)
    x = np.random.default_rng(seed).normal(0, 1, shape).astype(np.float32)
    ref = run_graph(graph, x)
    got = runner.run(x, record=set(graph.shapes))
    assert set(graph.outputs) <= set(got)
    errors = {}
    for name, value in got.items():
        scale = max(float(np.abs(value).max()), 1e-6)
        errors[name] = float(np.abs(ref[name] - value).max()) / scale
    worst = max(errors, key=errors.get)
    assert errors[worst] < tol, (worst, errors[worst])
    return errors


# -- attribute parsing and the JSON eras (no MXNet) -----------------------------------------------


def test_attribute_values_of_every_era():
    assert symbol.parse_tuple("(3,3)") == (3, 3)
    assert symbol.parse_tuple("(3, 3)") == (3, 3)
    assert symbol.parse_tuple("[1,2]") == (1, 2)
    assert symbol.parse_tuple("(4,)") == (4,)
    assert symbol.parse_tuple("()") == ()
    assert symbol.parse_tuple("(0, -1)") == (0, -1)
    assert symbol.parse_tuple("(None, 2)") == (None, 2)
    assert symbol.parse_bool("False") is False and symbol.parse_bool("true") is True
    assert symbol.parse_bool("1") is True
    assert symbol.parse_float("1e-05") == 1e-5 and symbol.parse_float("-inf") == -np.inf
    assert symbol.parse_int("64") == 64 and symbol.parse_int("2.0") == 2
    with pytest.raises(symbol.AttrError):
        symbol.parse_tuple("(3,x)")
    with pytest.raises(symbol.AttrError):
        symbol.parse_bool("maybe")


def test_reshape_special_values():
    rs = ops.reshape_shape
    assert rs((2, 3, 4, 5), (0, -1)) == (2, 60)
    assert rs((2, 3, 4, 5), (-2,)) == (2, 3, 4, 5)
    assert rs((2, 3, 4, 5), (0, -3, 0)) == (2, 12, 5)
    assert rs((2, 12, 5), (0, -4, 3, -1, 0)) == (2, 3, 4, 5)
    assert rs((2, 3, 4), (-1, 0), reverse=True) == (6, 4)
    assert rs((2, 3, 4), (8, 3)) == (8, 3)
    with pytest.raises(ValueError):
        rs((2, 3), (4, 4))


def test_malformed_symbol_files(tmp_path):
    cases = {
        "notjson": "{nodes: [",
        "nonodes": json.dumps({"heads": [[0, 0]]}),
        "badinput": json.dumps({"nodes": [{"op": "null", "name": "d", "inputs": []},
                                          {"op": "relu", "name": "r", "inputs": [[5, 0]]}],
                                "heads": [[1, 0]]}),
        "forward": json.dumps({"nodes": [{"op": "relu", "name": "r", "inputs": [[1, 0]]},
                                         {"op": "null", "name": "d", "inputs": []}],
                               "heads": [[0, 0]]}),
        "noheads": json.dumps({"nodes": [{"op": "null", "name": "d", "inputs": []}]}),
    }
    for name, text in cases.items():
        path = tmp_path / f"{name}-symbol.json"
        path.write_text(text)
        with pytest.raises(InputFileError, match=f"{name}-symbol.json: ") as err:
            symbol.read_symbol(path)
        assert "\n" not in str(err.value)


def test_spec_resolution(tmp_path):
    (tmp_path / "m-symbol.json").write_text("{}")
    for epoch in (1, 12, 3):
        (tmp_path / f"m-{epoch:04d}.params").write_bytes(b"")
    ck = cm.resolve(str(tmp_path / "m"))
    assert ck.epoch == 12 and ck.params.name == "m-0012.params"
    assert cm.resolve(f"{tmp_path / 'm'},3").params.name == "m-0003.params"
    assert cm.resolve(str(tmp_path / "m-symbol.json")).epoch == 12
    with pytest.raises(InputFileError, match="m-0005.params: no such file"):
        cm.resolve(f"{tmp_path / 'm'},5")
    with pytest.raises(InputFileError, match="x-symbol.json: no such file"):
        cm.resolve(str(tmp_path / "x"))
    with pytest.raises(InputFileError, match="not a number"):
        cm.resolve(f"{tmp_path / 'm'},five")


# -- against MXNet ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def every_op(tmp_path_factory):
    sym, text = every_op_symbol()
    prefix = tmp_path_factory.mktemp("everyop") / "everyop"
    return save_checkpoint(prefix, text, random_params(sym, (2, 3, 24, 24)))


@pytest.mark.mxnet
def test_every_handler_matches_mxnet(every_op):
    graph = cm.read_graph(every_op, (2, 3, 24, 24))
    ops = {n.source_op for n in graph.nodes}
    for op in ("_minus_scalar", "_mul_scalar", "_div_scalar", "_plus_scalar", "Convolution",
               "BatchNorm", "Activation", "LeakyReLU", "clip", "elemwise_add", "_Plus",
               "ElementWiseSum", "add_n", "broadcast_add", "Dropout", "_copy", "identity",
               "Pooling", "Concat", "softmax", "SoftmaxActivation", "Flatten", "Reshape",
               "FullyConnected", "SoftmaxOutput"):
        assert op in ops, op
    canon = {n.op for n in graph.nodes}
    assert {"conv", "batch_norm", "relu", "leaky_relu", "prelu", "elu", "sigmoid", "tanh",
            "softplus", "clip", "add", "sub", "mul", "div", "identity", "max_pool", "avg_pool",
            "global_avg_pool", "global_max_pool", "concat", "softmax", "flatten", "reshape",
            "linear"} <= canon
    by_name = {n.name: n for n in graph.nodes}
    assert by_name["pool_full"].attrs == {"kernel": (3, 3), "stride": (2, 2),
                                          "pads": (1, 1, 1, 1), "ceil": True,
                                          "count_include_pad": False}
    assert by_name["pool_valid"].attrs["ceil"] is False
    assert by_name["conv_grouped"].attrs == {"stride": (1, 1), "pads": (2, 2, 2, 2),
                                             "dilation": (2, 2), "group": 4}
    np.testing.assert_array_equal(by_name["bn_fixed"].params["gamma"], np.ones(8))
    assert any("fix_gamma=True" in note for note in graph.notes)
    assert graph.notes[1].startswith("the net scales its own input: (x - 113.75) / 62.5")
    errors = _compare_with_mxnet(every_op, (2, 3, 24, 24))
    assert len(errors) > 40


@pytest.mark.mxnet
def test_08_json_and_current_json_give_the_same_graph(tmp_path):
    sym = residual_symbol()
    params = random_params(sym, (1, 3, 16, 16), seed=5)
    current = save_checkpoint(tmp_path / "cur", sym.tojson(), params)
    old = save_checkpoint(tmp_path / "old", residual_json_08(sym), params)
    doc = json.loads(Path(f"{old}-symbol.json").read_text())
    assert all("param" in n and "backward_source_id" in n for n in doc["nodes"])
    assert not any(n["name"].endswith("moving_mean") for n in doc["nodes"])
    assert symbol.read_symbol(f"{old}-symbol.json").era == "param"
    g_cur = cm.read_graph(current, (1, 3, 16, 16))
    g_old = cm.read_graph(old, (1, 3, 16, 16))
    assert [(n.name, n.op, n.inputs, n.outputs, n.attrs) for n in g_cur.nodes] == \
        [(n.name, n.op, n.inputs, n.outputs, n.attrs) for n in g_old.nodes]
    for a, b in zip(g_cur.nodes, g_old.nodes, strict=True):
        assert a.params.keys() == b.params.keys()
        for k in a.params:
            np.testing.assert_array_equal(a.params[k], b.params[k])
    assert g_cur.shapes == g_old.shapes and g_cur.outputs == g_old.outputs
    # MXNet 1.9.1 upgrades the 0.8 file itself: both run, and agree with the graph
    _compare_with_mxnet(old, (1, 3, 16, 16))
    _compare_with_mxnet(current, (1, 3, 16, 16))
    # and the 0.9-1.x `attr` era
    mid = save_checkpoint(tmp_path / "mid", residual_json_attr_era(sym), params)
    assert symbol.read_symbol(f"{mid}-symbol.json").era == "attr"
    g_mid = cm.read_graph(mid, (1, 3, 16, 16))
    assert [(n.op, n.attrs) for n in g_mid.nodes] == [(n.op, n.attrs) for n in g_cur.nodes]
    _compare_with_mxnet(mid, (1, 3, 16, 16))


def _tiny(tmp_path, op_json: dict, extra_params=None, name="tiny"):
    nodes = [{"op": "null", "name": "data", "inputs": []},
             {"op": "null", "name": "w", "inputs": []},
             {"op": "Convolution", "name": "conv", "attrs": {"kernel": "(1, 1)",
                                                            "num_filter": "2",
                                                            "no_bias": "True"},
              "inputs": [[0, 0, 0], [1, 0, 0]]},
             dict(op_json, inputs=[[2, 0, 0]])]
    doc = {"nodes": nodes, "heads": [[3, 0, 0]], "attrs": {"mxnet_version": ["int", 10901]}}
    params = {"arg:w": np.ones((2, 3, 1, 1), np.float32), **(extra_params or {})}
    return save_checkpoint(tmp_path / name, json.dumps(doc), params)


@pytest.mark.mxnet
def test_unknown_op_is_refused_by_name(tmp_path):
    spec = _tiny(tmp_path, {"op": "Deconvolution", "name": "upsample7",
                            "attrs": {"kernel": "(2,2)", "num_filter": "2"}})
    with pytest.raises(ConversionError, match="node 'upsample7': op 'Deconvolution' has no "
                       "translation"):
        cm.read_graph(spec, (1, 3, 8, 8))
    spec = _tiny(tmp_path, {"op": "Activation", "name": "act", "attrs": {"act_type": "softsign"}},
                 name="soft")
    with pytest.raises(ConversionError, match="node 'act' \\(Activation\\): act_type 'softsign'"):
        cm.read_graph(spec, (1, 3, 8, 8))


@pytest.mark.mxnet
def test_missing_and_misshapen_tensors_are_listed(tmp_path):
    spec = _tiny(tmp_path, {"op": "BatchNorm", "name": "bn", "attrs": {}},
                 {"arg:bn_gamma": np.ones(3, np.float32)})
    with pytest.raises(WeightMismatchError) as err:
        cm.read_graph(spec, (1, 3, 8, 8))
    msg = str(err.value)
    assert "tiny-0000.params" in msg and "4 problem(s)" in msg
    assert "tensor 'bn_gamma' has shape [3]" in msg and "needs [2]" in msg
    assert "missing tensor 'bn_moving_var'" in msg


@pytest.mark.mxnet
def test_pooling_that_caffe_cannot_drop_is_refused(tmp_path):
    spec = _tiny(tmp_path, {"op": "Pooling", "name": "p", "attrs": {
        "kernel": "(2,2)", "stride": "(2,2)", "pad": "(1,1)", "pool_type": "max",
        "pooling_convention": "full"}})
    with pytest.raises(ConversionError, match="node 'p' \\(Pooling\\): .*wholly in the padding"):
        cm.read_graph(spec, (1, 3, 5, 5))


@pytest.mark.mxnet
def test_shape_ops_match_mxnet(tmp_path):
    """transpose, SwapAxis, Pad, mean, hard_sigmoid and Reshape's special values (ops the
    emitter may refuse for some targets): their graph against MXNet."""
    from caffezoo.frameworks import import_mxnet

    mx = import_mxnet()
    s = mx.sym
    data = s.var("data")
    x = s.Convolution(data, num_filter=6, kernel=(1, 1), name="c")
    a = s.Reshape(x, shape=(0, -4, 2, 3, -2), name="split")
    a = s.transpose(a, axes=(0, 2, 1, 3, 4), name="shuffle")
    a = s.Reshape(a, shape=(0, -3, -2), name="merge")
    a = s.SwapAxis(a, dim1=2, dim2=3, name="swap")
    a = s.Pad(a, mode="constant", pad_width=(0, 0, 0, 0, 1, 2, 0, 1), constant_value=0.5,
              name="pad")
    a = s.hard_sigmoid(a, name="hsig")
    m = s.mean(a, axis=(2, 3), keepdims=False, name="gmean")
    sym = s.FullyConnected(m, num_hidden=4, name="fc")
    spec = save_checkpoint(tmp_path / "shape", sym.tojson(), random_params(sym, (2, 3, 5, 7)))
    graph = cm.read_graph(spec, (2, 3, 5, 7))
    assert {"transpose", "pad", "hard_sigmoid", "global_avg_pool", "reshape"} <= \
        {n.op for n in graph.nodes}
    _compare_with_mxnet(spec, (2, 3, 5, 7))


@pytest.mark.mxnet
@pytest.mark.slow
@pytest.mark.parametrize("name, size", [("mobilenetv2_1.0", 64)])
def test_gluon_zoo_graphs_match_mxnet(tmp_path, name, size):
    from caffezoo.converters.mxnet.gluon import export_random_gluon

    prefix = export_random_gluon(name, tmp_path / name, size, seed=1)
    _compare_with_mxnet(prefix, (1, 3, size, size))
