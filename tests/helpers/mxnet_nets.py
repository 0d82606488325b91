"""Small MXNet checkpoints the MXNet tests write themselves: a symbol that uses every op the
front end translates (built with mx.sym, then some ops renamed to the aliases older MXNet wrote,
which MXNet 1.9.1 still loads), a small residual net in the current format and as MXNet 0.8
wrote its JSON, and their seeded random parameters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _mx():
    from caffezoo.frameworks import import_mxnet

    return import_mxnet()


def random_params(sym, data_shape, seed=0) -> dict[str, np.ndarray]:
    """Seeded parameters for every argument and auxiliary state of `sym` but data and labels,
    in a range that keeps activations normal (variances positive)."""
    rng = np.random.default_rng(seed)
    arg_shapes, _, aux_shapes = sym.infer_shape(data=data_shape)
    out = {}
    for name, shape in zip(sym.list_arguments(), arg_shapes, strict=True):
        if name == "data" or name.endswith("label"):
            continue
        if name.endswith("gamma"):
            out[f"arg:{name}"] = rng.uniform(0.5, 1.5, shape)
        elif name.endswith(("beta", "bias")):
            out[f"arg:{name}"] = rng.normal(0, 0.2, shape)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            out[f"arg:{name}"] = rng.normal(0, 1.0 / np.sqrt(fan_in), shape)
    for name, shape in zip(sym.list_auxiliary_states(), aux_shapes, strict=True):
        if name.endswith("var"):
            out[f"aux:{name}"] = rng.uniform(0.5, 2.0, shape)
        else:
            out[f"aux:{name}"] = rng.normal(0, 0.3, shape)
    return {k: np.asarray(v, np.float32) for k, v in out.items()}


def save_checkpoint(prefix: Path, json_text: str, params: dict[str, np.ndarray],
                    epoch: int = 0) -> str:
    mx = _mx()
    Path(f"{prefix}-symbol.json").write_text(json_text)
    mx.nd.save(f"{prefix}-{epoch:04d}.params", {k: mx.nd.array(v) for k, v in params.items()})
    return str(prefix)


def every_op_symbol():
    """One graph using every handler that Caffe can express; (symbol, JSON with old aliases)."""
    mx = _mx()
    sym = mx.sym
    data = sym.var("data")
    x = (data - 120.0) * 0.02  # _minus_scalar, _mul_scalar
    x = x / 1.25 + 0.1  # _div_scalar, _plus_scalar
    x = sym.Convolution(x, num_filter=8, kernel=(3, 3), stride=(2, 2), pad=(1, 1), name="conv1")
    x = sym.BatchNorm(x, fix_gamma=False, eps=2e-5, name="bn1")
    x = sym.Activation(x, act_type="relu", name="relu1")
    a = sym.Convolution(x, num_filter=8, kernel=(3, 3), pad=(2, 2), dilate=(2, 2), num_group=4,
                        no_bias=True, name="conv_grouped")
    a = sym.BatchNorm(a, fix_gamma=True, use_global_stats=True, name="bn_fixed")
    a = sym.LeakyReLU(a, act_type="leaky", slope=0.1, name="leaky")
    b = sym.LeakyReLU(x, act_type="prelu", name="prelu")
    c = sym.LeakyReLU(x, act_type="elu", slope=0.7, name="elu")
    d = sym.Activation(x, act_type="sigmoid", name="sig")
    e = sym.Activation(x, act_type="tanh", name="tanh")
    f = sym.Activation(x, act_type="softrelu", name="softrelu")
    g = sym.clip(x, a_min=0.0, a_max=6.0, name="relu6")
    s = sym.elemwise_add(a, b, name="sum2")
    s = sym.ElementWiseSum(s, c, d, name="sum3")
    s = sym.add_n(s, e, f, g, name="sum4")
    s = sym.broadcast_add(s, x, name="badd")
    s = sym.elemwise_add(s, x, name="plus_old")  # renamed _Plus below
    s = sym.Dropout(s, p=0.3, name="drop")
    s = sym._internal._copy(s, name="copy")
    s = sym.identity(s, name="ident")  # MXNet writes _copy: renamed below
    # on the 12x12 map: floor 5, ceil 7 with padding (then 5), ceil 6 without (then 5)
    p1 = sym.Pooling(s, pool_type="max", kernel=(3, 3), stride=(2, 2), name="pool_valid")
    p2 = sym.Pooling(s, pool_type="avg", kernel=(3, 3), stride=(2, 2), pad=(1, 1),
                     pooling_convention="full", count_include_pad=False, name="pool_full")
    p2 = sym.Pooling(p2, pool_type="avg", kernel=(3, 3), stride=(1, 1), name="pool_avg")
    p3 = sym.Pooling(s, pool_type="max", kernel=(3, 3), stride=(2, 2),
                     pooling_convention="full", name="pool_ceil")
    p3 = sym.Pooling(p3, pool_type="max", kernel=(2, 2), stride=(1, 1), name="pool_max")
    cat = sym.Concat(p1, p2, p3, dim=1, name="cat")
    h = sym.softmax(cat, axis=1, name="chan_softmax")
    h = sym.SoftmaxActivation(h, mode="channel", name="chan_softmax_act")
    gp = sym.Pooling(h, pool_type="avg", global_pool=True, kernel=(1, 1), name="gap")
    gm = sym.Pooling(h, pool_type="max", global_pool=True, kernel=(1, 1), name="gmp")
    flat = sym.Flatten(gp, name="flat")
    fc1 = sym.FullyConnected(flat, num_hidden=16, name="fc1")
    r = sym.Reshape(gm, shape=(0, -1), name="reshape")
    fc2 = sym.FullyConnected(r, num_hidden=16, name="fc2")
    fc3 = sym.FullyConnected(h, num_hidden=16, flatten=True, name="fc3")
    out = sym.elemwise_add(sym.elemwise_add(fc1, fc2, name="fcsum"), fc3, name="fcsum2")
    out = sym.SoftmaxOutput(out, name="softmax")
    doc = json.loads(out.tojson())
    for node in doc["nodes"]:
        if node["name"] == "plus_old":
            node["op"] = "_Plus"
        if node["name"] == "sum3":
            node["op"] = "ElementWiseSum"
        if node["name"] == "ident":
            node["op"] = "identity"
    return out, json.dumps(doc, indent=2)


def residual_symbol():
    """A small residual net (conv, BN, ReLU, a projection shortcut, _Plus, pooling, FC,
    SoftmaxOutput) in the current format."""
    mx = _mx()
    sym = mx.sym
    data = sym.var("data")
    x = sym.Convolution(data, num_filter=8, kernel=(3, 3), pad=(1, 1), name="conv0")
    x = sym.BatchNorm(x, fix_gamma=False, eps=1e-5, name="bn0")
    x = sym.Activation(x, act_type="relu", name="relu0")
    y = sym.Convolution(x, num_filter=16, kernel=(3, 3), stride=(2, 2), pad=(1, 1),
                        no_bias=True, name="conv1")
    y = sym.BatchNorm(y, fix_gamma=False, eps=2e-5, name="bn1")
    y = sym.Activation(y, act_type="relu", name="relu1")
    short = sym.Convolution(x, num_filter=16, kernel=(1, 1), stride=(2, 2), no_bias=True,
                            name="proj")
    z = sym.elemwise_add(y, short, name="plus0")
    z = sym.Pooling(z, pool_type="max", kernel=(3, 3), stride=(2, 2), name="pool0")
    z = sym.Pooling(z, pool_type="avg", global_pool=True, kernel=(1, 1), name="gpool")
    z = sym.Flatten(z, name="flatten0")
    z = sym.FullyConnected(z, num_hidden=10, name="fc")
    return sym.SoftmaxOutput(z, name="softmax")


def _param08(value: str) -> str:
    return value.replace(" ", "")


def residual_json_08(sym) -> str:
    """The residual net as MXNet 0.8 wrote its JSON: op parameters in `param` (tuples like
    "(3,3)", booleans "False"/"True", every parameter spelled out), `backward_source_id`,
    [node, output] pairs, no auxiliary-state nodes (BatchNorm's moving mean/var), `_Plus`,
    no top-level attrs."""
    doc = json.loads(sym.tojson())
    old_index: dict[int, int] = {}
    nodes = []
    aux_names = set(sym.list_auxiliary_states())
    defaults = {
        "Convolution": {"cudnn_off": "False", "cudnn_tune": "off", "dilate": "(1,1)",
                        "no_bias": "False", "num_group": "1", "pad": "(0,0)",
                        "stride": "(1,1)", "workspace": "1024"},
        "BatchNorm": {"eps": "0.001", "fix_gamma": "True", "momentum": "0.9",
                      "use_global_stats": "False"},
        "Pooling": {"global_pool": "False", "pad": "(0,0)", "stride": "(1,1)"},
        "FullyConnected": {"no_bias": "False"},
        "SoftmaxOutput": {"grad_scale": "1", "ignore_label": "-1", "multi_output": "False",
                          "normalization": "null", "out_grad": "False",
                          "preserve_shape": "False", "use_ignore": "False"},
    }
    for i, node in enumerate(doc["nodes"]):
        if node["op"] == "null" and node["name"] in aux_names:
            continue
        old_index[i] = len(nodes)
        param = dict(defaults.get(node["op"], {}))
        for k, v in node.get("attrs", {}).items():
            if not k.startswith("__"):
                param[k] = _param08(v)
        inputs = [[old_index[src], out] for src, out, *_ in node["inputs"] if src in old_index]
        op = "_Plus" if node["op"] == "elemwise_add" else node["op"]
        entry = {"op": op, "param": {} if op == "null" else param, "name": node["name"],
                 "inputs": inputs, "backward_source_id": -1}
        if node["name"] in ("conv0", "data"):
            entry["attr"] = {"ctx_group": "stage1"}
        nodes.append(entry)
    heads = [[old_index[h], o] for h, o, *_ in doc["heads"]]
    arg_nodes = [i for i, n in enumerate(nodes) if n["op"] == "null"]
    return json.dumps({"nodes": nodes, "arg_nodes": arg_nodes, "heads": heads}, indent=2)


def residual_json_attr_era(sym) -> str:
    """The residual net as MXNet 0.9 to early 1.x wrote it: op parameters in `attr`, triples,
    auxiliary states as nodes, `mxnet_version` 904."""
    doc = json.loads(sym.tojson())
    for node in doc["nodes"]:
        node["attr"] = node.pop("attrs", {})
    doc["attrs"] = {"mxnet_version": ["int", 904]}
    return json.dumps(doc, indent=2)
