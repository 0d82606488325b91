"""A seeded fuzz suite: mutated prototxt text and caffemodel bytes, through `caffezoo info` and
through real Caffe (the guarded pycaffe runtime, and `caffezoo time` in a subprocess). Whatever
the mutant, caffezoo must answer with a result or one line naming the problem: no traceback
(exit 70), no signal, and no Caffe crash that its checks let through (BackendCrash).

The mutants are reproducible (seeded). Every crash the fuzzing found is kept in REGRESSIONS
below, named, so that it stays fixed whatever the seeds do. CAFFEZOO_FUZZ_SCALE=N multiplies
the number of mutants (the CI default, 1, runs in well under a minute)."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from caffezoo import cli, netio
from caffezoo.builder import NetBuilder
from caffezoo.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, BackendCrash, CaffezooError
from caffezoo.random_weights import random_weights

SCALE = int(os.environ.get("CAFFEZOO_FUZZ_SCALE", "1"))
REPO = Path(__file__).resolve().parents[2]
SQUEEZENET = REPO.parent / "shared" / "data" / "squeezenet_v1.0_dc"

NUMBERS = ["0", "-1", "1", "2", "3", "7", "100000", "2147483647", "2147483648", "4294967297",
           "1000000000000"]
FLOATS = ["nan", "inf", "-inf", "0", "-1e30", "1e-45"]
TYPES = ["Split", "Pooling", "Convolution", "Deconvolution", "Eltwise", "Concat", "Slice",
         "Reshape", "Flatten", "Crop", "Silence", "Input", "InnerProduct", "LRN", "PReLU",
         "Softmax", "BatchNorm", "Scale", "Bias", "Dropout", "ReLU", "Python", "Data",
         "Threshold", "ArgMax", "MVN", "Power", "Normalize"]
FIELDS = ["engine: CUDNN", "pool: STOCHASTIC", "axis: -5", "group: 0", "top: \"data\"",
          "bottom: \"data\"", "param { name: \"w\" }", "loss_weight: 1",
          "include { phase: TRAIN }", "dilation: 0", "pad: 100000", "global_pooling: true",
          "channel_shared: true", "operation: MAX", "coeff: 2", "slice_point: 1",
          "num_output: 0", "kernel_size: 0", "stride: 0", "bias_term: false"]


def small_net():
    """Many layer kinds in a few layers: the fuzz base that reaches Caffe often."""
    b = NetBuilder("fuzz")
    x = b.input("data", (2, 3, 12, 12))
    c = b.conv(x, "conv1", num_output=4, kernel=3, pad=1)
    c = b.batch_norm(c, "conv1_bn")
    c = b.scale(c, "conv1_scale")
    c = b.relu(c, "conv1_relu")
    p = b.pool(c, "pool1", "max", kernel=3, stride=2, pad=1, ceil=False)
    q = b.pool(c, "pool2", "ave", kernel=2, stride=2)
    q = b.conv(q, "conv2", num_output=4, kernel=1, bias=False)
    s = b.eltwise([p, q], "sum")
    a, d = b.slice(s, "cut", ["part_a", "part_b"], slice_points=[1])
    x = b.concat([d, a], "swap")
    x = b.inner_product(x, "fc", num_output=5)
    b.softmax(x, "prob")
    return b.net


def bases() -> dict[str, tuple[str, bytes | None]]:
    """name -> (prototxt text, caffemodel bytes or None)."""
    from caffezoo import zoo

    net = small_net()
    out = {"small": (netio.format_prototxt(net), _caffemodel_bytes(net))}
    for name in ("resnext50_32x4d", "inception_v3"):
        card = zoo.get_card(name)
        out[name] = (netio.format_prototxt(card.build(card.input_size)), None)
    if (SQUEEZENET / "deploy.prototxt").exists():
        model = SQUEEZENET / "squeezenet_v1.0.caffemodel"
        models = sorted(SQUEEZENET.glob("*.caffemodel"))
        out["squeezenet"] = ((SQUEEZENET / "deploy.prototxt").read_text(),
                             (model if model.exists() else models[0]).read_bytes()
                             if models else None)
    return out


def _caffemodel_bytes(net) -> bytes:
    msg = netio.attach_weights(net, random_weights(net))
    return msg.SerializeToString()


# -- mutations ------------------------------------------------------------------------------

def mutate_text(text: str, rng: random.Random) -> str:
    lines = text.splitlines()
    for _ in range(rng.randint(1, 3)):
        if not lines:
            break
        i = rng.randrange(len(lines))
        op = rng.randrange(9)
        if op == 0:  # a number becomes an extreme one
            nums = list(re.finditer(r"(?<![\w.])-?\d+(\.\d+)?(e-?\d+)?", lines[i]))
            if nums:
                m = rng.choice(nums)
                new = rng.choice(FLOATS if "." in m.group() or "e" in m.group() else NUMBERS)
                lines[i] = lines[i][:m.start()] + new + lines[i][m.end():]
        elif op == 1:
            del lines[i]
        elif op == 2:
            lines.insert(i, lines[i])
        elif op == 3:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == 4:  # a name becomes another name of the file: in-place, cycles, unknowns
            names = re.findall(r'"[^"\n]*"', text)
            if names and '"' in lines[i]:
                lines[i] = re.sub(r'"[^"\n]*"', rng.choice(names), lines[i], count=1)
        elif op == 5:
            lines[i] = re.sub(r'type: "[^"]*"', f'type: "{rng.choice(TYPES)}"', lines[i])
            lines[i] = re.sub(r"pool: \w+", f"pool: {rng.choice(['MAX', 'AVE', 'STOCHASTIC'])}",
                              lines[i])
        elif op == 6:
            lines.insert(i, rng.choice(FIELDS))
        elif op == 7:  # bytes that are not text
            raw = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
            lines[i] = lines[i] + raw.decode("latin-1")
        else:
            lines = lines[:i]
    return "\n".join(lines) + "\n"


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not b:
            break
        op = rng.randrange(5)
        i = rng.randrange(len(b))
        if op == 0:
            b[i] = rng.randrange(256)
        elif op == 1:
            del b[i:]
        elif op == 2:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 3:
            b[i:i + 16] = bytes(16)
        else:
            j = rng.randrange(len(b))
            b[i:i] = b[j:j + rng.randint(1, 64)]
    return bytes(b)


# -- the properties -------------------------------------------------------------------------

def assert_one_line_answer(argv: list[str], capsys) -> int:
    """caffezoo's in-process answer: no traceback (internal error), at most one error line."""
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code != EXIT_INTERNAL, f"{argv}: {err}"
    if code:
        assert err.count("\n") == 1, f"{argv}: {err}"
    return code


def through_caffe(prototxt: Path, weights: Path | None, backend: str = "pycaffe") -> None:
    """Opens the runtime (by default the guarded pycaffe) and runs one batch: either that works
    or caffezoo refuses in one line; a BackendCrash means the checks missed something."""
    from caffezoo.runtimes import open_runtime

    try:
        rt = open_runtime(backend, prototxt, weights)
    except BackendCrash:
        raise
    except CaffezooError as err:
        assert "\n" not in str(err)
        return
    try:
        batch = np.random.default_rng(0).normal(size=rt.input_shape).astype(np.float32)
        rt.forward(batch)
    except BackendCrash:
        raise
    except CaffezooError as err:
        assert "\n" not in str(err)
    finally:
        if hasattr(rt, "close"):
            rt.close()


def reaches_caffe(prototxt: Path, weights: Path | None) -> bool:
    from caffezoo.runtimes import check_net

    try:
        check_net(prototxt, weights)
    except CaffezooError:
        return False
    return True


@pytest.fixture(scope="module")
def base_nets():
    return bases()


def test_mutated_prototxts_through_info(base_nets, tmp_path, capsys):
    rng = random.Random(9)
    codes: dict[int, int] = {}
    for name, (text, _) in base_nets.items():
        for k in range((60 if name == "small" else 25) * SCALE):
            path = tmp_path / f"{name}_{k}.prototxt"
            path.write_bytes(mutate_text(text, rng).encode("latin-1", "replace")
                             if rng.random() < 0.2 else mutate_text(text, rng).encode())
            code = assert_one_line_answer(["info", str(path)], capsys)
            codes[code] = codes.get(code, 0) + 1
    assert codes.get(0) and codes.get(3)  # the mutants both pass and fail: they test something


def test_mutated_caffemodels_through_info(base_nets, tmp_path, capsys):
    rng = random.Random(10)
    for name, (text, model) in base_nets.items():
        if model is None:
            continue
        proto = tmp_path / f"{name}.prototxt"
        proto.write_text(text)
        for k in range(20 * SCALE):
            path = tmp_path / f"{name}_{k}.caffemodel"
            path.write_bytes(mutate_bytes(model, rng))
            assert_one_line_answer(["info", str(proto), "--weights", str(path)], capsys)


@pytest.mark.caffe
@pytest.mark.slow
def test_mutated_nets_through_real_caffe(base_nets, tmp_path):
    """Mutants of the small net (and of its weights) that pass caffezoo's checks run in real
    Caffe, and in OpenCV (in this process: a crash there would end the test run); none may
    crash either or raise anything but a one-line caffezoo error."""
    rng = random.Random(11)
    text, model = base_nets["small"]
    good_model = tmp_path / "small.caffemodel"
    good_model.write_bytes(model)
    ran = tried = 0
    while ran < 8 * SCALE and tried < 400 * SCALE:
        tried += 1
        proto = tmp_path / f"m{tried}.prototxt"
        proto.write_text(mutate_text(text, rng))
        weights = None if rng.random() < 0.5 else good_model
        if rng.random() < 0.3:
            weights = tmp_path / f"m{tried}.caffemodel"
            weights.write_bytes(mutate_bytes(model, rng))
        if not reaches_caffe(proto, weights):
            continue
        ran += 1
        through_caffe(proto, weights)
        through_caffe(proto, weights, "opencv")
    assert ran == 8 * SCALE


@pytest.mark.caffe
@pytest.mark.slow
def test_mutated_nets_through_the_time_command(base_nets, tmp_path):
    """The whole CLI in its own process: exit status >= 0 (no signal), one line on error."""
    rng = random.Random(12)
    text, _ = base_nets["small"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for k in range(3 * SCALE):
        proto = tmp_path / f"t{k}.prototxt"
        proto.write_text(mutate_text(text, rng))
        proc = subprocess.run([sys.executable, "-m", "caffezoo", "time", "--prototxt",
                               str(proto), "--no-peak", "--iterations", "1", "--warmup", "0",
                               "--backends", "pycaffe", "--caffe-iterations", "1"],
                              capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode >= 0 and proc.returncode != EXIT_INTERNAL, proc.stderr
        if proc.returncode:
            assert proc.stderr.count("\n") <= 2, proc.stderr  # caffe time's line + the error


# -- outputs that are not files: every output option of every command --------------------------

def _output_cases(d: Path) -> dict[str, list[str]]:
    """argv per output option, OUT standing for the path; small real inputs in `d`."""
    net = small_net()
    proto, model = d / "small.prototxt", d / "small.caffemodel"
    proto.write_text(netio.format_prototxt(net))
    model.write_bytes(_caffemodel_bytes(net))
    (d / "val.txt").write_text("a.png 0\n")
    P, W = str(proto), str(model)
    ev = ["eval", "--prototxt", P, "--weights", W, "--val-list", str(d / "val.txt")]
    return {
        "export -o (onnx)": ["export", "--to", "onnx", "--prototxt", P, "--weights", W, "-o",
                             "OUT"],
        "export -o (torch)": ["export", "--to", "torch", "--prototxt", P, "--weights", W,
                              "-o", "OUT"],
        "info --json": ["info", P, "--json=OUT"],
        "zoo --json": ["zoo", "--json=OUT"],
        "zoo --write-docs": ["zoo", "--write-docs", "OUT"],
        "doctor --json": ["doctor", "--json=OUT"],
        "time --json": ["time", "--prototxt", P, "--json=OUT"],
        "validate --json": ["validate", "--source", "onnx:x.onnx", "--weights", W,
                            "--json=OUT"],
        "demo --json": ["demo", "--json=OUT"],
        "eval --json": [*ev, "--json=OUT"],
        "eval --log": [*ev, "--log", "OUT"],
        "eval --predictions": [*ev, "--predictions", "OUT"],
        "eval --results-csv": [*ev, "--results-csv", "OUT"],
        "eval --plot": [*ev, "--crop-sizes", "12", "--plot", "OUT"],
        "eval --record": [*ev, "--record", "OUT"],
        "table -o": ["table", f"wrn50_2:{W}", "--val-list", str(d / "val.txt"), "-o", "OUT"],
        "convert -o": ["convert", "--source", "onnx:x.onnx", "-o", "OUT_STEM"],
        "convert --random-init": ["convert", "--source", "torch:OUT", "--random-init",
                                  "--overwrite-source", "--model", "wrn50_2", "-o",
                                  str(d / "rx")],
        "generate -o": ["generate", "wrn50_2", "-o", "OUT"],
    }


def test_outputs_that_are_devices_or_fifos_are_refused(tmp_path, capfd):
    """A FIFO and (as root) a character device like /dev/null, made in tmp: every output
    option of every command refuses them (exit 3, one line), and they stay what they were. They
    used to be replaced by a regular file (as root, `-o /dev/null` would destroy /dev/null)."""
    from test_outputs import special_files

    cases = _output_cases(tmp_path)
    for kind, special in special_files(tmp_path).items():
        reader = os.open(special, os.O_RDONLY | os.O_NONBLOCK) if kind == "fifo" else None
        before = os.stat(special)
        for label, argv in cases.items():
            stem = tmp_path / f"{kind}-stem"
            link = stem.with_suffix(".caffemodel")  # convert -o STEM writes STEM.caffemodel
            link.unlink(missing_ok=True)
            link.symlink_to(special)
            argv = [a.replace("OUT_STEM", str(stem)).replace("OUT", str(special)) for a in argv]
            code = cli.main(argv)
            err = capfd.readouterr().err
            assert code == EXIT_BAD_INPUT, f"{label} ({kind}): {code} {err}"
            assert err.count("\n") == 1 and any(
                why in err for why in ("not a regular file", "not a folder",
                                       "cannot create folder")), f"{label}: {err}"
            after = os.stat(special)
            assert (after.st_mode, after.st_ino, after.st_rdev) == \
                (before.st_mode, before.st_ino, before.st_rdev), f"{label} replaced {kind}"
        if reader is not None:
            assert os.read(reader, 1) == b""  # nothing was written into the FIFO either
            os.close(reader)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".caffezoo-")]


# -- names that are not UTF-8 ------------------------------------------------------------------

def test_names_that_are_not_utf8(base_nets, tmp_path, capfd):
    """Layer names, tops and types of a caffemodel or prototxt with bytes that are not UTF-8
    (protobuf hands them out as bytes), and file names that are not (Python holds them as
    surrogates): info, info --json and export answer with a result or one line."""
    rng = random.Random(18)
    text, model = base_nets["small"]
    proto = tmp_path / "small.prototxt"
    proto.write_text(text)
    codes: dict[int, int] = {}
    names = sorted({n.encode() for n in re.findall(r'(?:name|top|type): "(\w\w+)"', text)})
    for k in range(12 * SCALE):
        name = rng.choice(names)
        bad = name[:1] + bytes([rng.choice([0xff, 0xfe, 0xc3, 0x80])]) + name[2:]
        mutant = tmp_path / f"m{k}.caffemodel"
        mutant.write_bytes(model.replace(name, bad, rng.choice([1, -1])))
        for argv in (["info", str(proto), "--weights", str(mutant)],
                     ["info", str(proto), "--weights", str(mutant), "--json"],
                     ["export", "--to", "onnx", "--prototxt", str(proto), "--weights",
                      str(mutant), "-o", str(tmp_path / f"e{k}.onnx")]):
            code = assert_clean_answer(argv, capfd, tmp_path / "nothing")
            codes[code] = codes.get(code, 0) + 1
    for k, raw in enumerate([b"n\xffet", b"\xc3(", b"caf\xe9", b"\x80\x80"]):
        odd = Path(os.fsdecode(bytes(tmp_path) + b"/" + raw + b".prototxt"))
        odd.write_text(text)
        weights = tmp_path / "small.caffemodel"
        weights.write_bytes(model)
        for argv in (["info", str(odd)], ["info", str(odd), "--json"],
                     ["export", "--to", "onnx", "--prototxt", str(odd), "--weights",
                      str(weights), "-o", os.fsdecode(bytes(tmp_path) + b"/o" + raw + b".onnx")],
                     ["export", "--to", "torch", "--prototxt", str(odd), "--weights",
                      str(weights), "-o", str(tmp_path / f"t{k}.pt")]):
            code = assert_clean_answer(argv, capfd, tmp_path / "nothing")
            assert code == 0, argv
    assert codes.get(3), codes


# -- every crash the fuzzing found, kept --------------------------------------------------------

_IN = 'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: %s } } }\n'
_C = "1 dim: 3 dim: 8 dim: 8"
# The crashes issue 9's fuzzing found (each aborted real Caffe or gave a wrong answer), and those
# found since; tests/cli/test_robust.py reproduces each in unguarded Caffe.
REGRESSIONS: dict[str, str] = {
    "stochastic_pooling": _IN % _C + 'layer { name: "p" type: "Pooling" bottom: "data" '
    'top: "p" pooling_param { pool: STOCHASTIC kernel_size: 2 stride: 2 } }',
    "cudnn_engine": _IN % _C + 'layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
    "convolution_param { num_output: 2 kernel_size: 3 engine: CUDNN } }",
    "inplace_split": _IN % _C + 'layer { name: "s" type: "Split" bottom: "data" top: "data" }',
    "split_without_top": _IN % _C + 'layer { name: "s" type: "Split" bottom: "data" }\n'
    'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }',
    "input_over_int32": _IN % "1 dim: 3 dim: 100000 dim: 100000" + 'layer { name: "r" '
    'type: "ReLU" bottom: "data" top: "r" }',
    "inplace_pooling": _IN % _C + 'layer { name: "p" type: "Pooling" bottom: "data" '
    'top: "data" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }',
    "prelu_channel_shared": _IN % _C + 'layer { name: "p" type: "PReLU" bottom: "data" '
    'top: "p" prelu_param { channel_shared: true } }',
}


@pytest.mark.caffe
@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_found_crashes_stay_fixed(name, tmp_path, capsys):
    path = tmp_path / "net.prototxt"
    path.write_text(REGRESSIONS[name])
    assert_one_line_answer(["info", str(path)], capsys)
    through_caffe(path, None)


# -- graph sources, export and graph validation ------------------------------------------------
# The commands added with the graph sources, through the whole CLI in this process. Output is
# captured at the file descriptors (capfd), so what native code (MXNet, onnxruntime) writes to
# stderr counts against the one line. A mutant may still be valid (exit 0); one that is not
# must give one `caffezoo COMMAND: error:` line, a status other than 70, and write nothing.


_last_error = ""


def assert_clean_answer(argv: list[str], capfd, out_dir: Path) -> int:
    global _last_error
    code = cli.main(argv)
    err = _last_error = capfd.readouterr().err
    assert code != EXIT_INTERNAL, f"{argv}: {err}"
    if code:
        assert err.count("\n") == 1 and err.startswith(f"caffezoo {argv[0]}: error: "), \
            f"{argv}: {err}"
        assert not out_dir.exists() or not any(out_dir.iterdir()), f"{argv}: wrote {out_dir}"
    return code


def onnx_base():
    """A small classifier with the ops of MobileNetV3's blocks: conv, BN, HardSwish, a
    squeeze-excitation (pool, 1x1 conv, HardSigmoid, Mul), ceil-mode max pooling, Gemm."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)

    def init(name, *shape, add=0.0):
        return numpy_helper.from_array((rng.normal(size=shape) * 0.3 + add).astype(np.float32),
                                       name)

    node = helper.make_node
    nodes = [
        node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3],
             pads=[1, 1, 1, 1], strides=[2, 2]),
        node("BatchNormalization", ["c1", "g", "be", "m", "v"], ["bn"], name="bn"),
        node("HardSwish", ["bn"], ["hs"], name="hs"),
        node("GlobalAveragePool", ["hs"], ["gp"], name="se_pool"),
        node("Conv", ["gp", "w2"], ["se1"], name="se_fc", kernel_shape=[1, 1]),
        node("HardSigmoid", ["se1"], ["se2"], name="se_gate", alpha=1 / 6, beta=0.5),
        node("Mul", ["hs", "se2"], ["sc"], name="se_mul"),
        node("MaxPool", ["sc"], ["mp"], name="pool", kernel_shape=[3, 3], strides=[2, 2],
             ceil_mode=1),
        node("Flatten", ["mp"], ["fl"], name="flat"),
        node("Gemm", ["fl", "fw", "fb"], ["y0"], name="fc", transB=1),
        node("Softmax", ["y0"], ["y"], name="prob")]
    inits = [init("w1", 8, 3, 3, 3), init("b1", 8), init("g", 8, add=1), init("be", 8),
             init("m", 8), numpy_helper.from_array(rng.uniform(0.5, 1.5, 8).astype(np.float32),
                                                   "v"),
             init("w2", 8, 8, 1, 1), init("fw", 5, 32), init("fb", 5)]
    graph = helper.make_graph(
        nodes, "fuzz", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=7)


# op types by family (a swap within one keeps the graph valid more often), then any op
ONNX_SWAPS = [["Relu", "Sigmoid", "HardSwish", "Tanh", "Sin", "Softplus", "Elu", "Identity"],
              ["MaxPool", "AveragePool", "LpPool"], ["Add", "Mul", "Sub", "Div", "Pow"],
              ["GlobalAveragePool", "GlobalMaxPool"], ["Gemm", "MatMul"],
              ["Softmax", "LogSoftmax", "Flatten"], ["Conv", "ConvTranspose"],
              ["Resize", "Loop", "LSTM", "Reshape", "Transpose", "Split", "Concat", "Pad"]]
ONNX_INTS = [0, 1, 2, 3, 5, -1, 100000, 2**31]
ONNX_ATTRS = [("auto_pad", "SAME_UPPER"), ("auto_pad", "SAME_LOWER"), ("auto_pad", "VALID"),
              ("dilations", [2, 2]), ("group", 2), ("group", 8), ("count_include_pad", 1),
              ("ceil_mode", 0), ("ceil_mode", 1), ("pads", [0, 1, 1, 0]), ("axis", 0),
              ("axis", -1), ("axis", 5), ("transA", 1), ("strides", [3, 1])]


def mutate_onnx(model, rng: random.Random):
    """A copy of `model` with 1-3 structural changes, most of which onnx's checker accepts:
    input dims (dynamic, small, zero, absurd), op types, attribute values and new attributes,
    edges rewired to earlier values; and, rarer, the opset, initializer dims, data types and
    bytes, deleted nodes and initializers."""
    import onnx
    from onnx import helper

    m = onnx.ModelProto.FromString(model.SerializeToString())
    g = m.graph
    for _ in range(rng.randint(1, 3)):
        op = rng.choices(range(10), weights=[3, 1, 4, 4, 4, 3, 1, 1, 1, 1])[0]
        at = rng.randrange(len(g.node)) if len(g.node) else None
        node = g.node[at] if at is not None else None
        tensor = rng.choice(g.initializer) if len(g.initializer) else None
        if op == 0:
            dim = rng.choice(g.input[0].type.tensor_type.shape.dim)
            if rng.random() < 0.3:
                dim.dim_param = rng.choice(["N", "H"])
            else:
                dim.dim_value = rng.choice([1, 2, 7, 16, 64, 0, 100000, 2**31])
        elif op == 1 and tensor is not None and tensor.dims:
            tensor.dims[rng.randrange(len(tensor.dims))] = rng.choice(ONNX_INTS)
        elif op == 2 and node is not None:
            family = next((f for f in ONNX_SWAPS if node.op_type in f), ONNX_SWAPS[-1])
            node.op_type = rng.choice(family if rng.random() < 0.8 else sum(ONNX_SWAPS, []))
        elif op == 3 and node is not None and node.attribute:
            a = rng.choice(node.attribute)
            if a.ints:
                a.ints[rng.randrange(len(a.ints))] = rng.choice(ONNX_INTS)
            elif a.type == onnx.AttributeProto.INT:
                a.i = rng.choice(ONNX_INTS)
            elif a.type == onnx.AttributeProto.FLOAT:
                a.f = rng.choice([float("nan"), float("inf"), 0.0, -1.0, 0.5])
        elif op == 4 and node is not None:
            name, value = rng.choice(ONNX_ATTRS)
            kept = [a for a in node.attribute if a.name != name]
            del node.attribute[:]
            node.attribute.extend([*kept, helper.make_attribute(name, value)])
        elif op == 5 and node is not None and node.input:
            earlier = ["x"] + [o for n in g.node[:at] for o in n.output]
            node.input[rng.randrange(len(node.input))] = rng.choice(earlier)
        elif op == 6 and node is not None:
            g.node.remove(node)
        elif op == 7:
            m.opset_import[0].version = rng.choice([9, 11, 13, 18, 22, 7])
        elif op == 8 and tensor is not None:
            tensor.data_type = rng.choice([0, 2, 6, 7, 10, 11, 16, 99])
        elif op == 9 and tensor is not None:
            tensor.raw_data = tensor.raw_data[:rng.randrange(len(tensor.raw_data) + 1)]
    return m


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    model = onnx_base()
    path = tmp_path_factory.mktemp("onnx") / "base.onnx"
    path.write_bytes(model.SerializeToString())
    return model, path


def test_mutated_onnx_files_through_convert(onnx_file, tmp_path, capfd):
    model, path = onnx_file
    rng = random.Random(13)
    data = model.SerializeToString()
    codes: dict[int, int] = {}
    for k in range(200 * SCALE):
        mutant = tmp_path / f"m{k}.onnx"
        mutant.write_bytes(mutate_bytes(data, rng) if rng.random() < 0.3
                           else mutate_onnx(model, rng).SerializeToString())
        out = tmp_path / f"out{k}"
        argv = ["convert", "--source", f"onnx:{mutant}", "-o", f"{out}/net",
                "--target", rng.choice(["caffe", "fork", "opencv"])]
        if rng.random() < 0.3:
            argv += ["--input-shape", rng.choice(["1,3,8,8", "2,3,16,16", "1,3,100000,100000"])]
        code = assert_clean_answer(argv, capfd, out)
        codes[code] = codes.get(code, 0) + 1
    assert codes.get(0) and codes.get(3), codes


# Conv attributes, valid and not: what a hand-edited or foreign exporter's file may hold
CONV_ATTRS = [("group", [0, -1, 1, 2, 3, 8, 100000, 2**31]),
              ("dilations", [[0, 0], [-1, 1], [1, 1], [2, 2], [100000, 1], [1], [1, 1, 1]]),
              ("strides", [[0, 1], [-2, 2], [1, 1], [3, 1], [2**31, 1], [2]]),
              ("pads", [[-1, 0, 0, 0], [1, 1], [0, 0, 0, 0], [2, 1, 0, 3], [2**31, 0, 0, 0],
                        [100000] * 4]),
              ("kernel_shape", [[0, 0], [3, 3], [5, 5], [3], [3, 3, 3], [-3, 3]]),
              ("auto_pad", ["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID", "bogus", ""])]


def test_onnx_conv_attributes_through_convert(onnx_file, tmp_path, capfd):
    """Every Conv node's attributes set, one to three at a time, to values from CONV_ATTRS
    (group 0 divided by zero: exit 70); the answer is a net or one line naming the node."""
    from onnx import helper

    model, _ = onnx_file
    rng = random.Random(17)
    codes: dict[int, int] = {}
    convs = [i for i, n in enumerate(model.graph.node) if n.op_type == "Conv"]
    for k in range(60 * SCALE):
        m = type(model).FromString(model.SerializeToString())
        node = m.graph.node[rng.choice(convs)]
        for name, values in rng.sample(CONV_ATTRS, rng.randint(1, 3)):
            kept = [a for a in node.attribute if a.name != name]
            del node.attribute[:]
            node.attribute.extend([*kept, helper.make_attribute(name, rng.choice(values))])
        path = tmp_path / f"c{k}.onnx"
        path.write_bytes(m.SerializeToString())
        out = tmp_path / f"out{k}"
        code = assert_clean_answer(["convert", "--source", f"onnx:{path}", "-o", f"{out}/n"],
                                   capfd, out)
        codes[code] = codes.get(code, 0) + 1
    assert codes.get(0) and codes.get(3), codes


def mxnet_base(folder: Path) -> tuple[str, bytes, str]:
    """(symbol JSON, params bytes, prefix) of the small residual net of the MXNet tests."""
    sys.path.insert(0, str(REPO / "tests"))
    from mxnet_nets import random_params, residual_symbol, save_checkpoint

    sym = residual_symbol()
    prefix = save_checkpoint(folder / "base", sym.tojson(),
                             random_params(sym, (1, 3, 16, 16)))
    return sym.tojson(), Path(f"{prefix}-0000.params").read_bytes(), prefix


MX_VALUES = ["(100000,100000)", "(0,0)", "(-1,-1)", "(3,3,3)", "()", "abc", "", "True", "nan",
             "1e400", "(2147483648,2)", "100000", 100000, -1, None, [], {}]
MX_OPS = ["Convolution", "Pooling", "null", "FullyConnected", "Concat", "Reshape", "Flatten",
          "elemwise_add", "BatchNorm", "SoftmaxOutput", "Activation", "LeakyReLU", "clip",
          "add_n", "broadcast_add", "Dropout", "UpSampling", "Deconvolution", 5, None]
MX_KEYS = ["kernel", "stride", "pad", "num_filter", "num_hidden", "shape", "num_group",
           "dilate", "eps", "axis", "dim", "global_pool", "pool_type", "act_type", "slope"]


def mutate_symbol(text: str, rng: random.Random) -> str:
    """The JSON with 1-3 changes: attribute values of wrong types or absurd sizes, op names,
    edges (cycles, forward and dangling references), deleted keys, heads."""
    import json

    doc = json.loads(text)
    for _ in range(rng.randint(1, 3)):
        nodes = doc.get("nodes") or [{}]
        n = rng.choice(nodes)
        op = rng.randrange(8)
        if op == 0:
            n.setdefault("attrs", {})[rng.choice(MX_KEYS)] = rng.choice(MX_VALUES)
        elif op == 1:
            n["op"] = rng.choice(MX_OPS)
        elif op == 2 and n.get("inputs"):
            edge = rng.choice(n["inputs"])
            here = nodes.index(n)
            edge[0] = rng.choice([here, here + 1, len(nodes) - 1, -1, 10**9, "0", None])
        elif op == 3 and n:
            del n[rng.choice(sorted(n))]
        elif op == 4:
            doc.pop(rng.choice(["nodes", "heads", "arg_nodes", "node_row_ptr", "attrs"]), None)
        elif op == 5:
            doc["heads"] = rng.choice([[], [[0, 0, 0]], [[10**6, 0, 0]], "x", [["a"]],
                                       [[len(nodes) - 1, 5, 0]]])
        elif op == 6:
            n["inputs"] = rng.choice([[], "x", [[0]], [[0, 0, 0]] * 3, None])
        else:
            n["name"] = rng.choice([nodes[0].get("name"), "", 5, None])
    return json.dumps(doc)


@pytest.fixture(scope="module")
def mxnet_checkpoint(tmp_path_factory):
    return mxnet_base(tmp_path_factory.mktemp("mxnet"))


@pytest.mark.mxnet
def test_mutated_mxnet_checkpoints_through_convert(mxnet_checkpoint, tmp_path, capfd):
    text, params, _ = mxnet_checkpoint
    rng = random.Random(14)
    codes: dict[int, int] = {}
    for k in range(150 * SCALE):
        prefix = tmp_path / f"m{k}"
        r = rng.random()
        symbol = (text if r < 0.3 else mutate_text(text, rng) if r < 0.45
                  else mutate_symbol(text, rng))
        Path(f"{prefix}-symbol.json").write_text(symbol)
        Path(f"{prefix}-0000.params").write_bytes(
            mutate_bytes(params, rng) if r < 0.3 or rng.random() < 0.2 else params)
        out = tmp_path / f"out{k}"
        argv = ["convert", "--source", f"mxnet:{prefix}", "-o", f"{out}/net"]
        if rng.random() < 0.8:
            argv += ["--input-shape", rng.choice(["1,3,16,16", "1,3,16,16", "1,3,100000,100000"])]
        code = assert_clean_answer(argv, capfd, out)
        codes[code] = codes.get(code, 0) + 1
    assert codes.get(0) and codes.get(3), codes


@pytest.mark.torch
def test_mutated_nets_through_export(base_nets, tmp_path, capfd):
    """Mutated prototxts and caffemodels of the small net through `export --to onnx|torch`."""
    pytest.importorskip("onnx")
    rng = random.Random(15)
    text, model = base_nets["small"]
    codes: dict[int, int] = {}
    for k in range(150 * SCALE):
        proto, weights = tmp_path / f"e{k}.prototxt", tmp_path / f"e{k}.caffemodel"
        what = rng.randrange(3)
        proto.write_text(mutate_text(text, rng) if what != 1 else text)
        weights.write_bytes(mutate_bytes(model, rng) if what != 0 else model)
        to = rng.choice(["onnx", "torch"])
        out = tmp_path / f"out{k}"
        out.mkdir()  # export writes into a folder that exists
        argv = ["export", "--to", to, "--prototxt", str(proto), "--weights", str(weights),
                "-o", f"{out}/net.{'onnx' if to == 'onnx' else 'pt'}"]
        argv += [flag for flag in ("--fold-bn", "--dynamic-batch") if rng.random() < 0.3]
        code = assert_clean_answer(argv, capfd, out)
        codes[code] = codes.get(code, 0) + 1
    assert codes.get(0) and codes.get(3), codes


def _converted(argv_source: str, folder: Path, capfd, *extra: str) -> tuple[str, bytes]:
    assert cli.main(["convert", "--source", argv_source, "-o", f"{folder}/base", *extra]) == 0
    capfd.readouterr()
    return (folder / "base.prototxt").read_text(), (folder / "base.caffemodel").read_bytes()


def _validate_mutants(kind: str, make_source, proto: str, model: bytes, rng, count: int,
                      tmp_path: Path, capfd) -> dict[int, int]:
    """`validate --source KIND:...` with the source, the prototxt or the caffemodel mutated
    (one of the three each time), on a random backend; passes and failures both count."""
    codes: dict[int, int] = {}
    for k in range(count):
        what = rng.randrange(3)
        spec = make_source(k, what == 0)
        p, w = tmp_path / f"v{k}.prototxt", tmp_path / f"v{k}.caffemodel"
        p.write_text(mutate_text(proto, rng) if what == 1 else proto)
        w.write_bytes(mutate_bytes(model, rng) if what == 2 else model)
        # the net's contract beside it, as convert wrote it (its BGR input order)
        (tmp_path / f"v{k}.contract.json").write_text(
            (tmp_path / "base.contract.json").read_text())
        argv = ["validate", "--source", f"{kind}:{spec}", "--weights", str(w), "--prototxt",
                str(p), "--random", "2",
                "--backend", rng.choice(["opencv", "pycaffe", "onnxruntime", "torch"])]
        if rng.random() < 0.5:
            argv.append("--layers")
        code = assert_clean_answer(argv, capfd, tmp_path / "nothing")
        codes[code] = codes.get(code, 0) + 1
    return codes


@pytest.mark.caffe
@pytest.mark.opencv
@pytest.mark.torch
@pytest.mark.mxnet
def test_mutated_graph_validations(onnx_file, mxnet_checkpoint, tmp_path, capfd):
    """`validate` of a graph source (ONNX through onnxruntime, MXNet through MXNet itself) with
    the source, the prototxt or the caffemodel mutated; status 1 (over tolerance) is an answer
    too, with its one line."""
    model, path = onnx_file
    rng = random.Random(16)
    proto, weights = _converted(f"onnx:{path}", tmp_path / "onnx", capfd)

    def onnx_source(k: int, mutate: bool) -> str:
        if not mutate:
            return str(path)
        mutant = tmp_path / f"s{k}.onnx"
        mutant.write_bytes(mutate_onnx(model, rng).SerializeToString())
        return str(mutant)

    codes = _validate_mutants("onnx", onnx_source, proto, weights, rng, 40 * SCALE,
                              tmp_path / "onnx", capfd)
    text, params, prefix = mxnet_checkpoint
    proto, weights = _converted(f"mxnet:{prefix}", tmp_path / "mxnet", capfd,
                                "--input-shape", "1,3,16,16")

    def mxnet_source(k: int, mutate: bool) -> str:
        if not mutate:
            return prefix
        mutant = tmp_path / f"x{k}"
        Path(f"{mutant}-symbol.json").write_text(mutate_symbol(text, rng))
        Path(f"{mutant}-0000.params").write_bytes(params if rng.random() < 0.5
                                                  else mutate_bytes(params, rng))
        return str(mutant)

    for code, n in _validate_mutants("mxnet", mxnet_source, proto, weights, rng, 30 * SCALE,
                                     tmp_path / "mxnet", capfd).items():
        codes[code] = codes.get(code, 0) + n
    assert codes.get(0) and codes.get(3), codes


# Crashes the fuzzing of the graph sources, export and graph validation found (each an internal
# error, a second stderr line, or an allocation sized by the file), kept by name: each builds
# its input in `folder` and returns (argv, what the one error line must say).


def _onnx_case(folder: Path, edit) -> str:
    model = onnx_base()
    edit(model)
    path = folder / "net.onnx"
    path.write_bytes(model.SerializeToString())
    return str(path)


def _initializer(model, name):
    return next(t for t in model.graph.initializer if t.name == name)


def _folding(folder: Path, op: str) -> str:
    """An input-independent constant of 1x3x100000x100000 added to the input."""
    from onnx import TensorProto, helper, numpy_helper

    ones = numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "one")
    shape = numpy_helper.from_array(np.array([1, 3, 100000, 100000], np.int64), "shape")
    value = helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])
    make = {"ConstantOfShape": ([helper.make_node(op, ["shape"], ["k"], value=value)], [shape]),
            "Expand": ([helper.make_node(op, ["one", "shape"], ["k"])], [ones, shape]),
            "Tile": ([helper.make_node(op, ["one", "shape"], ["k"])], [ones, shape])}
    nodes, inits = make[op]
    graph = helper.make_graph(
        [*nodes, helper.make_node("Add", ["x", "k"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b", "c", "d"])], inits)
    path = folder / "net.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                                       ir_version=7).SerializeToString())
    return str(path)


def _mxnet_case(folder: Path, edit) -> str:
    import json

    text, params, _ = mxnet_base(folder)
    doc = json.loads(text)
    nodes = {n["name"]: n for n in doc["nodes"]}
    text = edit(doc, nodes)
    Path(f"{folder}/bad-symbol.json").write_text(text if isinstance(text, str)
                                                  else json.dumps(doc))
    Path(f"{folder}/bad-0000.params").write_bytes(params)
    return f"{folder}/bad"


def _onnx_validate_kernel_failure(folder: Path):
    """A file the checker and onnxruntime's loader accept whose Conv fails when it runs (its
    kernel_shape 1x1 contradicts its 4x4 weight), validated against a net converted from the
    intact file: onnxruntime's error and its own log line became one caffezoo line."""
    from onnx import numpy_helper

    good = _onnx_case(folder, lambda m: None)
    assert cli.main(["convert", "--source", f"onnx:{good}", "-o", f"{folder}/conv"]) == 0
    model = onnx_base()
    _initializer(model, "w2").CopyFrom(
        numpy_helper.from_array(np.ones((1, 8, 4, 4), np.float32), "w2"))
    bad = _write(folder / "bad.onnx", model.SerializeToString())
    return (["validate", "--source", f"onnx:{bad}", "--weights", f"{folder}/conv.caffemodel",
             "--backend", "opencv", "--random", "1"],
            r"onnxruntime (failed running|cannot run) the graph")


def _onnx_validate_other_output_shape(folder: Path):
    """The source's output has 6 classes, the net converted from the intact file 5."""
    from onnx import numpy_helper

    good = _onnx_case(folder, lambda m: None)
    assert cli.main(["convert", "--source", f"onnx:{good}", "-o", f"{folder}/conv"]) == 0
    model = onnx_base()
    for name, shape in (("fw", (6, 32)), ("fb", (6,))):
        _initializer(model, name).CopyFrom(
            numpy_helper.from_array(np.ones(shape, np.float32), name))
    bad = _write(folder / "six.onnx", model.SerializeToString())
    return (["validate", "--source", f"onnx:{bad}", "--weights", f"{folder}/conv.caffemodel",
             "--backend", "opencv", "--random", "2"],
            r"conv.prototxt: output 'y' \(blob 'y'\): the Caffe net gives shape \(2, 5\), "
            r"the source \(2, 6\)")


def _set(nodes, name, key, value):
    nodes[name].setdefault("attrs", {})[key] = value


GRAPH_REGRESSIONS = {
    "onnx_initializer_shorter_than_its_dims": lambda d: (
        ["convert", "--source", "onnx:" + _onnx_case(
            d, lambda m: setattr(_initializer(m, "w1"), "raw_data",
                                 _initializer(m, "w1").raw_data * 2)), "-o", f"{d}/out/n"],
        r"initializer 'w1' \(dims 8,3,3,3, data type 1\) is unreadable"),
    "onnx_initializer_of_unknown_data_type": lambda d: (
        ["convert", "--source", "onnx:" + _onnx_case(
            d, lambda m: setattr(_initializer(m, "fb"), "data_type", 99)), "-o", f"{d}/out/n"],
        r"initializer 'fb' .* is unreadable"),
    "onnx_constant_of_shape_of_112_gib": lambda d: (
        ["convert", "--source", "onnx:" + _folding(d, "ConstantOfShape"), "-o", f"{d}/out/n"],
        r"would fold to 30,000,000,000 elements; refused"),
    "onnx_expand_of_112_gib": lambda d: (
        ["convert", "--source", "onnx:" + _folding(d, "Expand"), "-o", f"{d}/out/n"],
        r"would fold to 30,000,000,000 elements; refused"),
    "onnx_tile_of_112_gib": lambda d: (
        ["convert", "--source", "onnx:" + _folding(d, "Tile"), "-o", f"{d}/out/n"],
        r"would fold to 30,000,000,000 elements; refused"),
    "onnx_validate_kernel_failure": _onnx_validate_kernel_failure,
    "onnx_validate_other_output_shape": _onnx_validate_other_output_shape,
    "mxnet_concat_without_inputs": lambda d: (
        ["convert", "--source", "mxnet:" + _mxnet_case(  # fc's weight variable as a Concat
            d, lambda doc, n: n["fc_weight"].update(op="Concat", inputs=[])), "-o",
         f"{d}/out/n", "--input-shape", "1,3,16,16"],
        r"node 'fc_weight' \(Concat\): no inputs"),
    "mxnet_stride_zero": lambda d: (
        ["convert", "--source", "mxnet:" + _mxnet_case(
            d, lambda doc, n: _set(n, "conv0", "stride", "(0, 0)")), "-o", f"{d}/out/n",
         "--input-shape", "1,3,16,16"],
        r"node 'conv0' \(Convolution\): stride='\(0, 0\)': each value must be at least 1"),
    "mxnet_nan_in_a_tuple": lambda d: (
        ["convert", "--source", "mxnet:" + _mxnet_case(
            d, lambda doc, n: _set(n, "conv0", "kernel", "(nan, 3)")), "-o", f"{d}/out/n",
         "--input-shape", "1,3,16,16"],
        r"'nan' is not an integer"),
    "mxnet_json_nested_too_deeply": lambda d: (
        ["convert", "--source", "mxnet:" + _mxnet_case(d, lambda doc, n: "[" * 100000),
         "-o", f"{d}/out/n"],
        r"bad-symbol.json: not an MXNet symbol file \(JSON nested too deeply\)"),
    "input_shape_over_int32": lambda d: (
        ["convert", "--source", "mxnet:" + _mxnet_case(d, lambda doc, n: None), "-o",
         f"{d}/out/n", "--input-shape", "1,3,100000,100000"],
        r"--input-shape '1,3,100000,100000': 30,000,000,000 values"),
    "onnx_conv_group_zero": lambda d: (
        ["convert", "--source", "onnx:" + _onnx_case(
            d, lambda m: _set_attr(m.graph.node[0], "group", 0)), "-o", f"{d}/out/n"],
        r"node 'conv1' \(Conv\): group 0: must be at least 1"),
    "mxnet_symbol_of_too_many_nodes": lambda d: (  # 10^6 nodes ran past 300 s at 3.6 GB
        ["convert", "--source", f"mxnet:{_mxnet_chain(d, 60_000)}", "-o", f"{d}/out/n",
         "--input-shape", "1,3,8,8"],
        r"chain-symbol.json: 60,000 nodes; refused above 50,000"),
    "validate_net_of_two_inputs": lambda d: (
        ["validate", "--source", "onnx:" + _onnx_case(d, lambda m: None), "--weights",
         f"{d}/two.caffemodel", "--prototxt", str(_write(
             d / "two.prototxt", _IN % _C + _IN.replace('"data"', '"more"') % _C))],
        r"two.prototxt: expected one NCHW input, found data \(1, 3, 8, 8\), more"),
}


def _set_attr(node, name, value) -> None:
    from onnx import helper

    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend([*kept, helper.make_attribute(name, value)])


def _mxnet_chain(folder: Path, n: int) -> str:
    """An MXNet symbol of `n` ReLUs in a chain: refused by its node count before it is
    parsed, not after minutes of conversion."""
    import json

    nodes = [{"op": "null", "name": "data", "inputs": []}] + [
        {"op": "Activation", "name": f"r{i}", "attrs": {"act_type": "relu"},
         "inputs": [[i - 1, 0, 0]]} for i in range(1, n)]
    Path(f"{folder}/chain-symbol.json").write_text(
        json.dumps({"nodes": nodes, "arg_nodes": [0], "heads": [[n - 1, 0, 0]]}))
    Path(f"{folder}/chain-0000.params").write_bytes(b"")
    return f"{folder}/chain"


def _write(path: Path, data: str | bytes) -> Path:
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    return path


@pytest.mark.parametrize("name", sorted(GRAPH_REGRESSIONS))
def test_found_graph_crashes_stay_fixed(name, tmp_path, capfd):
    if name.startswith("onnx") or "validate" in name:
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")
    if name.startswith(("mxnet", "input_shape")):
        from caffezoo.errors import DependencyError
        from caffezoo.frameworks import import_mxnet

        try:
            import_mxnet()
        except DependencyError as err:
            pytest.skip(str(err))
    argv, message = GRAPH_REGRESSIONS[name](tmp_path)
    capfd.readouterr()
    assert assert_clean_answer(argv, capfd, tmp_path / "out") == EXIT_BAD_INPUT
    # the error line, once more: assert_clean_answer consumed it
    assert re.search(message, _last_error), _last_error


@pytest.mark.mxnet
@pytest.mark.caffe
def test_mxnet_validation_writes_nothing_to_stderr(mxnet_checkpoint, tmp_path, capfd):
    """MXNet logs an INFO line from C++ on every bind; a passing validation prints none."""
    _, _, prefix = mxnet_checkpoint
    _converted(f"mxnet:{prefix}", tmp_path, capfd, "--input-shape", "1,3,16,16")
    assert cli.main(["validate", "--source", f"mxnet:{prefix}", "--weights",
                     f"{tmp_path}/base.caffemodel", "--random", "2", "--layers"]) == 0
    assert capfd.readouterr().err == ""


@pytest.mark.torch
def test_torch_checkpoint_of_junk_is_one_line(tmp_path):
    """torch.load warns (a Python warning, on stderr) about the pickle protocol of junk before
    it refuses it; in a subprocess, as a user sees it (pytest would capture the warning)."""
    junk = _write(tmp_path / "junk.pth", b"\x80\x04junk" * 10)
    proc = subprocess.run([sys.executable, "-m", "caffezoo", "convert", "--source",
                           f"torch:{junk}", "--model", "resnext50_32x4d", "-o",
                           f"{tmp_path}/out/n"], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "junk.pth: not a weights-only PyTorch checkpoint (corrupt or truncated data" \
        in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
