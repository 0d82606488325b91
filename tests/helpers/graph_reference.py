"""An independent numpy implementation of the canonical graph ops (caffezoo/graph/ir.py), for the
emitter's tests: convolutions by explicit kernel-tap loops, pools by explicit windows, in
float64. It shares no code with caffezoo.graph."""

from __future__ import annotations

import math

import numpy as np


def _conv(x, w, bias, stride, pads, dilation, group):
    top, left, bottom, right = pads
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    n, c, hp, wp = xp.shape
    o, cg, kh, kw = w.shape
    sh, sw = stride
    dh, dw = dilation
    oh = (hp - (dh * (kh - 1) + 1)) // sh + 1
    ow = (wp - (dw * (kw - 1) + 1)) // sw + 1
    out = np.zeros((n, o, oh, ow))
    og = o // group
    for g in range(group):
        xg = xp[:, g * cg:(g + 1) * cg]
        wg = w[g * og:(g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                patch = xg[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                           j * dw:j * dw + sw * (ow - 1) + 1:sw]
                out[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", patch, wg[:, :, i, j])
    if bias is not None:
        out += np.asarray(bias).reshape(1, -1, 1, 1)
    return out


def _out_size(n, k, s, lo, hi, ceil):
    span = n + lo + hi - k
    out = (math.ceil(span / s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= n + lo:  # the last window must start inside the input
        out -= 1
    return out


def _pool(x, kernel, stride, pads, ceil, mode, include_pad=False):
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = kernel, stride, pads
    oh, ow = _out_size(h, kh, sh, pt, pb, ceil), _out_size(w, kw, sw, pl, pr, ceil)
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            h0, w0 = i * sh - pt, j * sw - pl
            h1, w1 = h0 + kh, w0 + kw
            win = x[:, :, max(h0, 0):min(h1, h), max(w0, 0):min(w1, w)]
            if mode == "max":
                out[:, :, i, j] = win.max(axis=(2, 3))
            else:
                if include_pad:
                    count = (min(h1, h + pb) - h0) * (min(w1, w + pr) - w0)
                else:
                    count = (min(h1, h) - max(h0, 0)) * (min(w1, w) - max(w0, 0))
                out[:, :, i, j] = win.sum(axis=(2, 3)) / count
    return out


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def run(graph, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every value of `graph` computed on input `x`, float64."""
    (name, _), = graph.inputs.items()
    vals: dict[str, np.ndarray] = {name: np.asarray(x, np.float64)}
    vals.update({k: np.asarray(v, np.float64) for k, v in graph.constants.items()})
    for node in graph.nodes:
        a = node.attrs
        p = {k: np.asarray(v, np.float64) for k, v in node.params.items()}
        ins = [vals[v] for v in node.inputs]
        x0 = ins[0]
        op = node.op
        if op == "conv":
            y = _conv(x0, p["weight"], p.get("bias"), a.get("stride", (1, 1)),
                      a.get("pads", (0, 0, 0, 0)), a.get("dilation", (1, 1)), a.get("group", 1))
        elif op == "batch_norm":
            c = x0.shape[1]
            g = p.get("gamma", np.ones(c)).reshape(1, -1, 1, 1)
            be = p.get("beta", np.zeros(c)).reshape(1, -1, 1, 1)
            y = (x0 - p["mean"].reshape(1, -1, 1, 1)) / np.sqrt(
                p["var"].reshape(1, -1, 1, 1) + a.get("eps", 1e-5)) * g + be
        elif op == "relu":
            y = np.maximum(x0, 0)
        elif op == "leaky_relu":
            y = np.where(x0 > 0, x0, x0 * a.get("alpha", 0.01))
        elif op == "prelu":
            s = p["slope"].reshape(-1)
            s = s.reshape(1, -1, *([1] * (x0.ndim - 2))) if s.size > 1 else s[0]
            y = np.where(x0 > 0, x0, x0 * s)
        elif op == "elu":
            y = np.where(x0 > 0, x0, a.get("alpha", 1.0) * (np.exp(x0) - 1))
        elif op == "clip":
            y = np.clip(x0, a.get("min", -np.inf), a.get("max", np.inf))
        elif op == "sigmoid":
            y = _sigmoid(x0)
        elif op == "tanh":
            y = np.tanh(x0)
        elif op == "softplus":
            y = np.log1p(np.exp(x0))
        elif op == "hard_sigmoid":
            y = np.clip(a.get("alpha", 0.2) * x0 + a.get("beta", 0.5), 0, 1)
        elif op == "hard_swish":
            y = x0 * np.clip(x0 + 3, 0, 6) / 6
        elif op == "silu":
            y = x0 * _sigmoid(x0)
        elif op in ("max_pool", "avg_pool"):
            y = _pool(x0, a["kernel"], a.get("stride", (1, 1)), a.get("pads", (0, 0, 0, 0)),
                      a.get("ceil", False), "max" if op == "max_pool" else "avg",
                      a.get("count_include_pad", False))
        elif op == "global_avg_pool":
            y = x0.mean(axis=(2, 3), keepdims=True)
        elif op == "global_max_pool":
            y = x0.max(axis=(2, 3), keepdims=True)
        elif op == "add":
            y = sum(ins[1:], ins[0])
        elif op == "sub":
            y = ins[0] - ins[1]
        elif op == "max":
            y = np.maximum(ins[0], ins[1])
        elif op == "mul":
            y = ins[0] * ins[1]
        elif op == "div":
            y = ins[0] / ins[1]
        elif op == "concat":
            y = np.concatenate(ins, axis=a.get("axis", 1))
        elif op == "flatten":
            ax = a.get("axis", 1)
            y = x0.reshape(math.prod(x0.shape[:ax]), -1)
        elif op == "reshape":
            y = x0.reshape(a["shape"])
        elif op == "transpose":
            y = x0.transpose(a["perm"])
        elif op == "linear":
            y = x0.reshape(len(x0), -1) @ p["weight"].T + (p["bias"] if "bias" in p else 0)
        elif op == "softmax":
            e = np.exp(x0 - x0.max(axis=a.get("axis", -1), keepdims=True))
            y = e / e.sum(axis=a.get("axis", -1), keepdims=True)
        elif op == "pad":
            top, left, bottom, right = a["pads"]
            y = np.pad(x0, ((0, 0), (0, 0), (top, bottom), (left, right)),
                       constant_values=a.get("value", 0))
        elif op == "slice":
            index = [slice(None)] * x0.ndim
            index[a["axis"]] = slice(a["start"], a["end"])
            y = x0[tuple(index)]
        elif op == "identity":
            y = x0
        else:
            raise NotImplementedError(op)
        vals[node.outputs[0]] = y
    return vals
