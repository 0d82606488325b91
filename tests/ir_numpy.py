"""A slow, plain numpy (float64) evaluator of caffezoo.graph.ir graphs: a second implementation
of the canonical ops' semantics, so a front end can be checked against its source framework
without the emitter or Caffe. Written from the op definitions in caffezoo/graph/ir.py; test use
only (small nets, small inputs)."""

from __future__ import annotations

import numpy as np

from caffezoo.graph.ir import Graph


def _pad(x, pads, value=0.0):
    top, left, bottom, right = pads
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def _conv(x, w, bias, stride, pads, dilation, group):
    x = _pad(x, pads)
    n, c, h, wd = x.shape
    o, ig, kh, kw = w.shape
    sh, sw = stride
    dh, dw = dilation
    oh = (h - (dh * (kh - 1) + 1)) // sh + 1
    ow = (wd - (dw * (kw - 1) + 1)) // sw + 1
    out = np.zeros((n, o, oh, ow))
    og = o // group
    for g in range(group):
        xs = x[:, g * ig:(g + 1) * ig]
        wg = w[g * og:(g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                           j * dw:j * dw + sw * (ow - 1) + 1:sw]
                out[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", patch, wg[:, :, i, j])
    if bias is not None:
        out += bias.reshape(1, -1, 1, 1)
    return out


def _pool(x, kind, kernel, stride, pads, ceil, count_include_pad=True):
    n, c, h, w = x.shape
    kh, kw = kernel
    sh, sw = stride
    t, lf, b, r = pads

    def size(length, k, s, p0, p1):
        span = length + p0 + p1 - k
        return (-(-span // s) if ceil else span // s) + 1

    oh, ow = size(h, kh, sh, t, b), size(w, kw, sw, lf, r)
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            h0, w0 = i * sh - t, j * sw - lf
            h1, w1 = min(h0 + kh, h + b), min(w0 + kw, w + r)  # window clipped to padded map
            area = (h1 - h0) * (w1 - w0)
            hs, ws = max(h0, 0), max(w0, 0)
            he, we = min(h1, h), min(w1, w)
            win = x[:, :, hs:he, ws:we]
            if kind == "max":
                out[:, :, i, j] = win.max(axis=(2, 3))
            else:
                count = area if count_include_pad else (he - hs) * (we - ws)
                out[:, :, i, j] = win.sum(axis=(2, 3)) / count
    return out


def run_graph(graph: Graph, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every value of the graph for input x."""
    (name,) = graph.inputs
    vals: dict[str, np.ndarray] = {name: np.asarray(x, np.float64)}
    vals.update({k: np.asarray(v, np.float64) for k, v in graph.constants.items()})
    for node in graph.nodes:
        ins = [vals[v] for v in node.inputs]
        a, p = node.attrs, {k: np.asarray(v, np.float64) for k, v in node.params.items()}
        op = node.op
        if op == "conv":
            y = _conv(ins[0], p["weight"], p.get("bias"), a["stride"], a["pads"],
                      a["dilation"], a["group"])
        elif op == "batch_norm":
            shape = (1, -1) + (1,) * (ins[0].ndim - 2)
            gamma = p.get("gamma", np.ones_like(p["mean"]))
            beta = p.get("beta", np.zeros_like(p["mean"]))
            y = ((ins[0] - p["mean"].reshape(shape)) / np.sqrt(p["var"].reshape(shape) + a["eps"])
                 * gamma.reshape(shape) + beta.reshape(shape))
        elif op == "relu":
            y = np.maximum(ins[0], 0)
        elif op == "leaky_relu":
            y = np.where(ins[0] > 0, ins[0], ins[0] * a["alpha"])
        elif op == "prelu":
            s = p["slope"]
            s = s.reshape((1, -1) + (1,) * (ins[0].ndim - 2)) if s.size > 1 else s.reshape(())
            y = np.where(ins[0] > 0, ins[0], ins[0] * s)
        elif op == "elu":
            y = np.where(ins[0] > 0, ins[0], a["alpha"] * (np.exp(ins[0]) - 1))
        elif op == "clip":
            y = np.clip(ins[0], a["min"], a["max"])
        elif op == "sigmoid":
            y = 1 / (1 + np.exp(-ins[0]))
        elif op == "tanh":
            y = np.tanh(ins[0])
        elif op == "softplus":
            y = np.log1p(np.exp(ins[0]))
        elif op == "hard_sigmoid":
            y = np.clip(a["alpha"] * ins[0] + a["beta"], 0, 1)
        elif op == "max_pool":
            y = _pool(ins[0], "max", a["kernel"], a["stride"], a["pads"], a["ceil"])
        elif op == "avg_pool":
            y = _pool(ins[0], "avg", a["kernel"], a["stride"], a["pads"], a["ceil"],
                      a["count_include_pad"])
        elif op == "global_avg_pool":
            y = ins[0].mean(axis=(2, 3), keepdims=True)
        elif op == "global_max_pool":
            y = ins[0].max(axis=(2, 3), keepdims=True)
        elif op == "add":
            y = sum(ins[1:], ins[0])
        elif op == "sub":
            y = ins[0] - ins[1]
        elif op == "mul":
            y = ins[0] * ins[1]
        elif op == "div":
            y = ins[0] / ins[1]
        elif op == "concat":
            y = np.concatenate(ins, axis=a["axis"])
        elif op == "flatten":
            y = ins[0].reshape(ins[0].shape[:a["axis"]] + (-1,))
        elif op == "reshape":
            y = ins[0].reshape(a["shape"])
        elif op == "transpose":
            y = ins[0].transpose(a["perm"])
        elif op == "linear":
            y = ins[0] @ p["weight"].T + (p["bias"] if "bias" in p else 0)
        elif op == "softmax":
            e = np.exp(ins[0] - ins[0].max(axis=a["axis"], keepdims=True))
            y = e / e.sum(axis=a["axis"], keepdims=True)
        elif op == "pad":
            y = _pad(ins[0], a["pads"], a["value"])
        elif op == "identity":
            y = ins[0]
        else:
            raise NotImplementedError(op)
        expect = graph.shapes.get(node.outputs[0])
        assert expect is None or tuple(y.shape) == tuple(expect), (node.name, y.shape, expect)
        vals[node.outputs[0]] = y
    return vals
