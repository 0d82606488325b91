"""TF-slim checkpoints -> the zoo's `_tfslim` variants: reading, TF padding checked window by
window, refusals, mismatch lists, and ResNet-101 v2 and Inception-v3 converted and validated in
real Caffe and OpenCV against TensorFlow itself (graph mode, the checkpoint restored).

Checkpoints are seeded random (nothing can be downloaded here), with batch-norm betas and moving
statistics randomised (caffezoo/converters/tfslim/random_init.py), calibrated at small sizes to
keep the file quick. Inception-v4 and Inception-ResNet-v2 are validated the same way by
benchmarks/tfslim_validate.py at their default and a small size (docs/conversion.md): building
and calibrating them costs minutes on two cores; here their slim definitions are checked for the
released variable names and shapes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from caffezoo import cli, netio, zoo
from caffezoo.builder import NetBuilder
from caffezoo.card_plan import Assign, ConvSpec, Op, Plan, PoolSpec
from caffezoo.converters import common, tfslim
from caffezoo.converters.registry import open_card_source
from caffezoo.converters.tfslim import nets, reader
from caffezoo.converters.tfslim.random_init import save_random_checkpoint
from caffezoo.errors import ConversionError, InputFileError, WeightMismatchError
from caffezoo.validation import card as card_side
from caffezoo.validation import inputs as vinputs
from caffezoo.validation.engine import open_caffe
from caffezoo.validation.report import DEFAULT_TOLERANCE

pytestmark = pytest.mark.tensorflow
IMAGENET_SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "imagenet_samples"


def _tf():
    from caffezoo.frameworks import import_tensorflow

    return import_tensorflow()


def write_checkpoint(prefix: Path, arrays: dict[str, np.ndarray]) -> None:
    """A TF checkpoint holding exactly `arrays` (and a `checkpoint` state file)."""
    tf = _tf()
    graph = tf.Graph()
    with graph.as_default():
        variables = [tf.compat.v1.Variable(v, name=k) for k, v in arrays.items()]
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver(variables).save(sess, str(prefix), write_meta_graph=False)


# -- reading ------------------------------------------------------------------------------------


def test_reader_finds_prefix_folder_and_index_and_makes_weights_canonical(tmp_path):
    rng = np.random.default_rng(0)
    hwio = rng.standard_normal((3, 5, 4, 8)).astype(np.float32)
    fc = rng.standard_normal((6, 7)).astype(np.float32)
    write_checkpoint(tmp_path / "model.ckpt-7", {"Net/conv/weights": hwio, "Net/fc/weights": fc,
                                                 "global_step": np.int64(7)})
    for spec in (tmp_path / "model.ckpt-7", tmp_path, tmp_path / "model.ckpt-7.index"):
        ckpt = reader.read_checkpoint(spec)
        assert ckpt.path == str(tmp_path / "model.ckpt-7")
        assert set(ckpt.tensors) == {"Net/conv/weights", "Net/fc/weights"}  # ints left out
    naming = ckpt.naming
    # OIHW: out channel o, in channel i, row y, column x = HWIO[y, x, i, o]
    conv = naming.to_canonical(common.Part.WEIGHT, ckpt.tensors["Net/conv/weights"])
    assert conv.shape == (8, 4, 3, 5) and conv[6, 2, 1, 4] == hwio[1, 4, 2, 6]
    lin = naming.to_canonical(common.Part.WEIGHT, ckpt.tensors["Net/fc/weights"])
    assert lin.shape == (7, 6) and lin[5, 2] == fc[2, 5]
    assert naming.key("Net/conv/BatchNorm", common.Part.VAR) == "Net/conv/BatchNorm/moving_variance"


def test_reader_errors_name_the_file(tmp_path):
    with pytest.raises(InputFileError, match="nothing.ckpt.index not found"):
        reader.read_checkpoint(tmp_path / "nothing.ckpt")
    with pytest.raises(InputFileError, match="without a 'checkpoint' file"):
        reader.read_checkpoint(tmp_path)
    write_checkpoint(tmp_path / "m.ckpt", {"a/weights": np.ones((64, 64), np.float32)})
    data = next(tmp_path.glob("m.ckpt.data-*"))
    data.write_bytes(data.read_bytes()[:100])  # truncated
    with pytest.raises(InputFileError, match=r"m\.ckpt: not a readable TF checkpoint"):
        reader.read_checkpoint(tmp_path / "m.ckpt")
    with pytest.raises(InputFileError, match="unknown source kind 'tf'.*tf-slim:CKPT"):
        open_card_source("tf:x", None, None)


def _one_conv_net(size: int, pad: int):
    b = NetBuilder("t")
    x = b.input("data", (1, 3, size, size))
    b.conv(x, "conv", num_output=4, kernel=3, stride=2, pad=pad, bias=True)
    return b.net


def _ckpt(arrays):
    return common.Checkpoint("t.ckpt", reader.FORMAT, arrays, naming=reader.SLIM_NAMING)


def test_asymmetric_same_convolution_is_refused_naming_the_layer():
    """TF SAME with stride 2 on an even map pads only bottom/right: Caffe's symmetric pad 1
    computes other windows (shown against TensorFlow), and the handler refuses it; on an odd map
    TF pads one pixel each side and the conversion goes through."""
    tf = _tf()
    rng = np.random.default_rng(1)
    w = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    arrays = {"c/weights": w, "c/biases": np.zeros(4, np.float32)}
    plan = Plan("tf-slim", [Assign(Op.CONV, "c", ("conv",), conv=ConvSpec("SAME"))])
    with pytest.raises(ConversionError, match=r"'conv' pads 1 on each side of its 8-pixel axis.*"
                       r"pads 0 before and 1 after: no symmetric Caffe padding"):
        common.apply_plan(_one_conv_net(8, 1), _ckpt(arrays), plan, common.ConvertOptions())
    common.apply_plan(_one_conv_net(9, 1), _ckpt(arrays), plan, common.ConvertOptions())
    # why: on an even map TF's windows start at 0, Caffe's (pad 1) at -1
    x = rng.standard_normal((1, 8, 8, 3)).astype(np.float32)
    same = tf.nn.conv2d(x, w, 2, "SAME").numpy()
    sym = tf.nn.conv2d(np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), w, 2, "VALID").numpy()
    assert same.shape == sym.shape and np.abs(same - sym).max() > 0.1


@pytest.mark.caffe
def test_same_max_pooling_on_even_maps_is_caffe_ceil_rounding(tmp_path):
    """ResNet-v2's pool1 (3x3/2 SAME): TF's bottom/right padding on even maps is Caffe's ceil
    rounding without padding, on odd maps a pad of 1; the handler accepts exactly those."""
    from caffezoo.runtimes import open_runtime

    tf = _tf()
    rng = np.random.default_rng(2)
    for n, pad, ceil in ((8, 0, True), (9, 1, False), (8, 1, False)):
        b = NetBuilder("p")
        x = b.input("data", (1, 2, n, n))
        b.pool(x, "pool", "max", kernel=3, stride=2, pad=pad, ceil=ceil)
        plan = Plan("tf-slim", [Assign(Op.POOL, "p", ("pool",),
                                       pool=PoolSpec("max", 3, 2, padding="SAME"))])
        ok = (n, pad) != (8, 1)
        if not ok:
            with pytest.raises(ConversionError, match="'pool' covers other pixels"):
                common.apply_plan(b.net, _ckpt({}), plan, common.ConvertOptions())
            continue
        result = common.apply_plan(b.net, _ckpt({}), plan, common.ConvertOptions(bgr=False))
        netio.write_prototxt(result.net, tmp_path / "p.prototxt")
        data = rng.standard_normal((1, 2, n, n)).astype(np.float32)
        got = open_runtime("pycaffe", tmp_path / "p.prototxt").forward(data, ["pool"])["pool"]
        want = tf.nn.max_pool2d(data.transpose(0, 2, 3, 1), 3, 2, "SAME").numpy()
        np.testing.assert_array_equal(got, want.transpose(0, 3, 1, 2))


# -- the slim definitions written here ------------------------------------------------------------


@pytest.mark.slow
def test_slim_definitions_have_the_released_names_and_shapes():
    tf = _tf()
    expect = {
        "InceptionV4": {
            "InceptionV4/Mixed_6b/Branch_1/Conv2d_0b_1x7/weights": (1, 7, 192, 224),
            "InceptionV4/Mixed_3a/Branch_1/Conv2d_0a_3x3/weights": (3, 3, 64, 96),
            "InceptionV4/Mixed_7d/Branch_2/Conv2d_0e_3x1/weights": (3, 1, 512, 256),
            "InceptionV4/Conv2d_1a_3x3/BatchNorm/moving_variance": (32,),
            "InceptionV4/AuxLogits/Conv2d_2a/weights": (5, 5, 128, 768),
            "InceptionV4/AuxLogits/Aux_logits/weights": (768, 1001),
            "InceptionV4/Logits/Logits/weights": (1536, 1001),
        },
        "InceptionResnetV2": {
            "InceptionResnetV2/Repeat/block35_1/Branch_0/Conv2d_1x1/weights": (1, 1, 320, 32),
            "InceptionResnetV2/Repeat/block35_10/Conv2d_1x1/biases": (320,),
            "InceptionResnetV2/Repeat_1/block17_20/Branch_1/Conv2d_0c_7x1/weights":
                (7, 1, 160, 192),
            "InceptionResnetV2/Repeat_2/block8_9/Conv2d_1x1/weights": (1, 1, 448, 2080),
            "InceptionResnetV2/Block8/Conv2d_1x1/biases": (2080,),
            "InceptionResnetV2/Mixed_7a/Branch_2/Conv2d_1a_3x3/weights": (3, 3, 288, 320),
            "InceptionResnetV2/AuxLogits/Conv2d_2a_5x5/weights": (5, 5, 128, 768),
            "InceptionResnetV2/AuxLogits/Logits/weights": (768, 1001),
            "InceptionResnetV2/Logits/Logits/weights": (1536, 1001),
        },
    }
    # published parameter counts without the auxiliary head (FACTS §5: 42.7 M and 55.8 M)
    published = {"InceptionV4": 42.7e6, "InceptionResnetV2": 55.8e6}
    for scope, names in expect.items():
        net = nets.BY_SCOPE[scope]
        graph = tf.Graph()
        with graph.as_default():
            net.build(tf.compat.v1.placeholder(tf.float32, (1, 299, 299, 3)), aux=True)
            shapes = {v.op.name: tuple(v.shape.as_list())
                      for v in tf.compat.v1.global_variables()}
        for name, shape in names.items():
            assert shapes.get(name) == shape, name
        assert not any("gamma" in n for n in shapes)  # scale=False
        learned = sum(int(np.prod(s)) for n, s in shapes.items()
                      if "/AuxLogits/" not in n and "moving_" not in n)
        assert abs(learned - published[scope]) < 0.06e6, (scope, learned)


# -- conversions end to end ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_ckpts(tmp_path_factory):
    """Seeded random checkpoints of ResNet-101 v2 and Inception-v3 (calibrated small)."""
    folder = tmp_path_factory.mktemp("slim")
    out = {}
    for card, size in (("resnet101_v2_tfslim", 64), ("inception_v3_tfslim", 107)):
        out[card] = save_random_checkpoint(nets.BY_CARD[card], folder / f"{card}.ckpt", seed=3,
                                           size=size)
    return out


def _inputs(source, contract):
    batches = [vinputs.random_inputs(2, contract, source.input_norm, seed=5)]
    if (IMAGENET_SAMPLES / "val.txt").exists():
        batches.append(vinputs.image_inputs(IMAGENET_SAMPLES, contract, source.input_norm,
                                            limit=2))
    return batches


def _validate(source, card, zoo_net, out, inputs, contract, spec, backend="pycaffe",
              layers=False):
    with open_caffe(f"{out}.prototxt", f"{out}.caffemodel", backend, layers) as caffe:
        return card_side.validate(source, card, zoo_net, caffe, inputs, contract, spec,
                                  layers=layers)


@pytest.mark.caffe
@pytest.mark.opencv
@pytest.mark.slow
@pytest.mark.parametrize(("model", "sizes"), [("resnet101_v2_tfslim", (64, 66)),
                                              ("inception_v3_tfslim", (139,))])
def test_checkpoint_converts_exactly_in_caffe_and_opencv(tmp_path, capsys, random_ckpts, model,
                                                         sizes):
    """Two sizes each: ResNet at 64 (conv1 gives an even map: pool1 by ceil rounding) and 66
    (odd: pad 1); Inception-v3 at 139 (75, its smallest, in the border test). Both backends,
    random and real images, every mapped layer compared on the first."""
    card = zoo.get_card(model)
    for size in sizes:
        out = tmp_path / f"{model}-{size}"
        assert cli.main(["convert", "--source", f"tf-slim:{random_ckpts[model]}", "--model",
                         model, "--input-size", str(size), "-o", str(out)]) == 0
        printed = capsys.readouterr().out
        assert "dropped: 1000 outputs" in printed and "reversed" in printed
        zoo_net = card.build(size)
        source = open_card_source(f"tf-slim:{random_ckpts[model]}", card, zoo_net)
        for backend in ("pycaffe", "opencv"):
            contract = card.contract(size)
            for i, inputs in enumerate(_inputs(source, contract)):
                report = _validate(source, card, zoo_net, out, inputs, contract, model, backend,
                                   layers=i == 0 and backend == "pycaffe")
                assert report.passed, report.lines()
                assert report.max_rel < DEFAULT_TOLERANCE
                assert report.outputs[0].top1_agree == report.count
                if report.layers is not None:
                    assert len(report.layers) > 250 and report.first_divergence is None


@pytest.mark.caffe
@pytest.mark.slow
def test_without_the_border_correction_the_error_is_large(tmp_path, random_ckpts):
    """The exclude-pad Scale blobs set to 1 (Caffe's plain average, padding counted): the same
    validation fails by orders of magnitude, at the first pooling that needs it."""
    card = zoo.get_card("inception_v3_tfslim")
    ckpt = random_ckpts["inception_v3_tfslim"]
    result = tfslim.convert(ckpt, card, 75)
    netio.write_prototxt(result.net, tmp_path / "v3.prototxt")
    for layer in result.net.layer:
        if layer.name.endswith("_exclude_pad"):
            layer.blobs[0].data[:] = [1.0] * len(layer.blobs[0].data)
    netio.write_caffemodel(result.net, tmp_path / "v3.caffemodel")
    zoo_net = card.build(75)
    source = open_card_source(f"tf-slim:{ckpt}", card, zoo_net)
    contract = card.contract(75)
    report = _validate(source, card, zoo_net, tmp_path / "v3",
                       vinputs.random_inputs(2, contract, source.input_norm), contract, ckpt,
                       layers=True)
    assert not report.passed and report.max_rel > 1e-2
    assert report.first_divergence == "inception_a1_pool"


@pytest.mark.slow
def test_keep_background_keeps_1001_outputs(random_ckpts):
    card = zoo.get_card("resnet101_v2_tfslim")
    ckpt = reader.read_checkpoint(random_ckpts["resnet101_v2_tfslim"])
    logits_w = ckpt.tensors["resnet_v2_101/logits/weights"][0, 0].T  # (1001, 2048)
    dropped = tfslim.convert_checkpoint(ckpt, card, 64)
    kept = tfslim.convert_checkpoint(ckpt, card, 64, common.ConvertOptions(keep_background=True))
    blob = {n: {layer.name: netio.blob_to_array(layer.blobs[0]) for layer in r.net.layer
                if layer.name == "classifier"}["classifier"]
            for n, r in (("dropped", dropped), ("kept", kept))}
    np.testing.assert_array_equal(blob["kept"], logits_w)
    np.testing.assert_array_equal(blob["dropped"], logits_w[1:])


@pytest.mark.slow
def test_originals_are_refused_naming_the_variant(random_ckpts):
    v3 = reader.read_checkpoint(random_ckpts["inception_v3_tfslim"])
    with pytest.raises(ConversionError) as info:
        tfslim.convert_checkpoint(v3, zoo.get_card("inception_v3"), 299)
    msg = str(info.value)
    assert "'inception_c2_pool' pools by MAX" in msg and "averages over the padding" in msg
    assert "--model inception_v3_tfslim" in msg
    with pytest.raises(ConversionError, match="convert it into --model resnet101_v2_tfslim"):
        tfslim.convert(random_ckpts["resnet101_v2_tfslim"], zoo.get_card("resnet101_v2"))
    with pytest.raises(ConversionError, match=r"holds InceptionV3 \(convert it into --model "
                       "inception_v3_tfslim\\), not resnet_v2_101"):
        tfslim.convert_checkpoint(v3, zoo.get_card("resnet101_v2_tfslim"), 64)
    with pytest.raises(ConversionError, match="averages 8x8 windows.*above 299 px"):
        tfslim.convert_checkpoint(v3, zoo.get_card("inception_v3_tfslim"), 395)


@pytest.mark.slow
def test_missing_and_misshapen_variables_are_all_listed_and_nothing_is_written(
        tmp_path, capsys, random_ckpts):
    arrays = dict(reader.read_checkpoint(random_ckpts["resnet101_v2_tfslim"]).tensors)
    del arrays["resnet_v2_101/block2/unit_3/bottleneck_v2/conv2/weights"]
    del arrays["resnet_v2_101/postnorm/gamma"]
    arrays["resnet_v2_101/logits/biases"] = np.zeros(10, np.float32)
    write_checkpoint(tmp_path / "bad.ckpt", arrays)
    out = tmp_path / "out" / "bad"
    code = cli.main(["convert", "--source", f"tf-slim:{tmp_path / 'bad.ckpt'}", "--model",
                     "resnet101_v2_tfslim", "--input-size", "64", "-o", str(out)])
    err = capsys.readouterr().err
    assert code != 0 and len(err.strip().splitlines()) == 1
    for needle in ("3 problem(s)",
                   "missing tensor 'resnet_v2_101/block2/unit_3/bottleneck_v2/conv2/weights' "
                   "(for layer 'res6_conv2')",
                   "missing tensor 'resnet_v2_101/postnorm/gamma'",
                   "'resnet_v2_101/logits/biases' has shape [10], layer 'classifier' needs "
                   "[1001]"):
        assert needle in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    with pytest.raises(WeightMismatchError):
        tfslim.convert(tmp_path / "bad.ckpt", zoo.get_card("resnet101_v2_tfslim"), 64)


def test_tensorflow_says_nothing_before_caffezoos_line(tmp_path):
    """TensorFlow's native log (the oneDNN notice, twice, each after an absl warning) came
    before caffezoo's one line; in a subprocess, where file descriptor 2 is the user's."""
    import os
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "caffezoo", "convert", "--source",
         f"tf-slim:{tmp_path / 'missing.ckpt'}", "--model", "inception_v3_tfslim", "-o",
         str(tmp_path / "out")], capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])))
    assert proc.returncode == 3
    assert proc.stderr.splitlines() == [
        f"caffezoo convert: error: {tmp_path / 'missing.ckpt'}: no such TF checkpoint "
        f"({tmp_path / 'missing.ckpt'}.index not found)"]
