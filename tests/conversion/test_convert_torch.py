"""PyTorch checkpoints -> zoo caffemodels: reading, layouts, mismatches, structure checks, and
every required pair converted and validated in real Caffe against the PyTorch model itself.

Source weights are seeded random (no download is possible here), with BatchNorm statistics made
non-trivial by `random_model`, so a swapped mean/variance, a wrong eps or a channel mix-up would
show. Inputs are kept small (64 px for ResNets, 107 px for Inceptions; one ResNeXt-50 run at the
real 224) so the file runs in a few minutes on two cores.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from caffezoo import cli, contract, zoo
from caffezoo.converters import common
from caffezoo.converters import pytorch as ct
from caffezoo.converters.pytorch import cards
from caffezoo.converters.pytorch.reader import TORCH_NAMING
from caffezoo.converters.registry import open_card_source
from caffezoo.errors import ConversionError, InputFileError

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

IMAGENET_SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "imagenet_samples"


class Unsafe:
    """Pickled as a global: torch.load(weights_only=True) must refuse it."""


def _ckpt(path: str, tensors: dict) -> common.Checkpoint:
    return common.Checkpoint(path, "pytorch", tensors, naming=TORCH_NAMING)


def _state(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def tv_resnext50():
    return ct.random_model("resnext50_32x4d", "torchvision", seed=3)


# -- reading ------------------------------------------------------------------------------------


def test_load_unwraps_checkpoint_dicts_and_dataparallel_prefix(tmp_path):
    w = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    for wrapped in ({"state_dict": {"module.fc.weight": w}, "epoch": 3},
                    {"model": {"fc.weight": w}, "optimizer": {"lr": 0.1}},
                    {"fc.weight": w, "fc.num_batches_tracked": torch.tensor(5)}):
        path = tmp_path / "ck.pth"
        torch.save(wrapped, path)
        ckpt = ct.load_pytorch(path)
        assert list(ckpt.tensors)[0] == "fc.weight"
        np.testing.assert_array_equal(ckpt.tensors["fc.weight"], w.numpy())


def test_load_never_unpickles_objects(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"fc.weight": torch.zeros(2), "extra": Unsafe()}, path)
    # the message says what was refused, not torch's advice to load with weights_only=False
    with pytest.raises(InputFileError, match=r"evil.pth: not a weights-only PyTorch checkpoint "
                       r"\(refused by the weights-only loader: Unsupported global: .*Unsafe") \
            as err:
        ct.load_pytorch(path)
    assert "weights_only` set to `False`" not in str(err.value)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        ct.load_pytorch(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputFileError, match="junk.pth"):
        ct.load_pytorch(junk)
    notdict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], notdict)
    with pytest.raises(InputFileError, match="not a state_dict"):
        ct.load_pytorch(notdict)


# -- layouts ------------------------------------------------------------------------------------


def test_the_checkpoint_meets_the_model_of_its_card_and_layout(tv_resnext50):
    card = zoo.get_card("resnext50_32x4d")
    ckpt = _ckpt("tv.pth", {k: v.numpy() for k, v in tv_resnext50.state_dict().items()})
    assert cards.source_model(card, None, ckpt)[0] == "torchvision"
    assert cards.source_model(card, "timm", ckpt)[1].factory == "timm:resnext50_32x4d"
    # a zoo original meets its variants' model (and the structure decides)
    assert cards.source_model(zoo.get_card("inception_v4"), None, ckpt)[1].factory == \
        "timm:inception_v4"
    with pytest.raises(ConversionError, match=r"tv.pth: the lua layout is for .t7 files"):
        cards.source_model(card, "lua", ckpt)

    junk = _ckpt("junk.pth", {"encoder.w": np.zeros(3, np.float32)})
    with pytest.raises(ConversionError, match=r"^junk.pth: its tensor names \(encoder.w, \.\.\.\) "
                       r"are none of torchvision:resnext50_32x4d's \(conv1.weight, "):
        ct.convert_checkpoint(junk, card, 64)


# -- mismatches ---------------------------------------------------------------------------------


def test_mismatched_checkpoint_lists_every_problem_and_writes_nothing(tmp_path, tv_resnext50,
                                                                      capsys):
    state = _state(tv_resnext50)
    del state["layer1.0.conv1.weight"]
    state["fc.bias"] = torch.zeros(10)
    state["extra.weight"] = torch.zeros(3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    out = tmp_path / "out" / "bad"
    code = cli.main(["convert", "--source", f"torch:{path}", "--model", "resnext50_32x4d",
                     "--input-size", "64", "-o", str(out)])
    err = capsys.readouterr().err
    assert code != 0
    assert len(err.strip().splitlines()) == 1
    for needle in ("missing tensor 'layer1.0.conv1.weight'", "'fc.bias' has shape [10]",
                   "needs [1000]", "unexpected tensor(s): extra.weight"):
        assert needle in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_random_init_never_replaces_a_checkpoint_unless_asked(tmp_path, capsys):
    """`--random-init` writes to the source path: a file already there (a trained .pth) is
    refused, naming it, before anything is written; --overwrite-source replaces it."""
    ckpt = tmp_path / "trained.pth"
    ckpt.write_bytes(b"the user's trained weights")
    argv = ["convert", "--source", f"torch:{ckpt}", "--random-init", "--model",
            "resnext50_32x4d", "--input-size", "64", "-o", str(tmp_path / "out" / "rx")]
    assert cli.main(argv) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{ckpt}: exists; --random-init would replace it" in err
    assert ckpt.read_bytes() == b"the user's trained weights"
    assert not (tmp_path / "out").exists()
    assert cli.main([*argv, "--overwrite-source"]) == 0
    assert "NOT trained weights" in capsys.readouterr().out
    assert ct.load_pytorch(ckpt).tensors  # a state_dict now
    assert (tmp_path / "out" / "rx.caffemodel").is_file()
    assert cli.main(["convert", "--source", f"torch:{ckpt}", "--overwrite-source", "--model",
                     "resnext50_32x4d", "-o", str(tmp_path / "x")]) == 2  # only with it


def test_deeper_checkpoint_into_shallower_net_names_the_extra_blocks():
    model = ct.source_arch("resnext101_32x4d", "timm").build()
    ckpt = _ckpt("r101.pth", {k: v.numpy() for k, v in model.state_dict().items()})
    card = zoo.get_card("resnext50_32x4d")
    with pytest.raises(ConversionError) as info:
        ct.convert_checkpoint(ckpt, card, 64)
    msg = str(info.value)
    assert "\n" not in msg
    # layer3 of ResNeXt-101 has 23 blocks, ResNeXt-50's 6: blocks 6..22 are left over, 17
    # blocks of 3 convolutions and 3 batch norms (4 tensors each) = 17 * 15 tensors
    assert "255 unexpected tensor(s)" in msg
    assert "layer3.6.conv1.weight" in msg and "layer3.22.bn3.running_var" in msg
    assert "layer3.5.conv1.weight" not in msg


def test_sources_that_compute_differently_are_refused_with_the_variant_named():
    """The checkpoint meets the original through its variant's model; the pairing names the
    first layer that computes differently and the card that holds the checkpoint."""
    from caffezoo.frameworks import import_timm, import_torchvision

    cases = [
        ("inception_v4", import_timm().create_model("inception_v4", pretrained=False),
         "zoo layer 'inception_a1_pool_ave' is a AVE pooling 3x3 stride 1 pad 1 -> 35x35 where "
         "the source's '/features/features.6/branch3/branch3.0/AveragePool' is a AVE pooling "
         "3x3 stride 1 pad 1 -> 35x35 (padding excluded)", "inception_v4_timm"),
        ("inception_resnet_v2",
         import_timm().create_model("inception_resnet_v2", pretrained=False),
         "zoo layer 'ave_pool' is a AVE pooling", "inception_resnet_v2_timm"),
        ("inception_v3", import_torchvision().models.inception_v3(
            weights=None, aux_logits=True, init_weights=False),
         "zoo layer 'inception_c2_pool' is a MAX pooling", "inception_v3_tv"),
    ]
    for name, model, reason, variant in cases:
        card = zoo.get_card(name)
        ckpt = _ckpt(f"{name}.pth", {k: v.numpy() for k, v in model.state_dict().items()})
        with pytest.raises(ConversionError) as info:
            ct.convert_checkpoint(ckpt, card, 299)
        msg = str(info.value)
        assert msg.startswith(f"{name} cannot hold {name}.pth exactly: ")
        assert reason in msg and f"fits --model {variant}" in msg


# -- what the handlers write ---------------------------------------------------------------------


def test_blobs_are_the_source_tensors_in_caffe_form(tv_resnext50):
    card = zoo.get_card("resnext50_32x4d")
    ckpt = _ckpt("tv.pth", {k: v.numpy() for k, v in tv_resnext50.state_dict().items()})
    result = ct.convert_checkpoint(ckpt, card, 64)
    blobs = {layer.name: layer.blobs for layer in result.net.layer}
    from caffezoo.netio import blob_to_array

    sd = tv_resnext50.state_dict()
    # first convolution: input channels reversed (RGB source, BGR input)
    np.testing.assert_array_equal(blob_to_array(blobs["conv1"][0]),
                                  sd["conv1.weight"].numpy()[:, ::-1])
    # other convolutions untouched, grouped weight shape kept
    np.testing.assert_array_equal(blob_to_array(blobs["resx1_conv2"][0]),
                                  sd["layer1.0.conv2.weight"].numpy())
    # BatchNorm: [mean, var, scale factor 1]; Scale: [gamma, beta]
    bn = [blob_to_array(b) for b in blobs["resx4_match_conv_bn"]]
    np.testing.assert_array_equal(bn[0], sd["layer2.0.downsample.1.running_mean"].numpy())
    np.testing.assert_array_equal(bn[1], sd["layer2.0.downsample.1.running_var"].numpy())
    np.testing.assert_array_equal(bn[2], [1.0])
    sc = [blob_to_array(b) for b in blobs["resx4_match_conv_scale"]]
    np.testing.assert_array_equal(sc[0], sd["layer2.0.downsample.1.weight"].numpy())
    np.testing.assert_array_equal(sc[1], sd["layer2.0.downsample.1.bias"].numpy())
    np.testing.assert_array_equal(blob_to_array(blobs["classifier"][1]), sd["fc.bias"].numpy())


def test_input_affine_maps_the_card_to_the_source():
    # torchvision's ImageNet normalisation is exactly the ResNeXt card's, channels reversed
    card = zoo.get_card("resnext50_32x4d")
    assert contract.input_affine(ct.IMAGENET, card.mean, card.std) is None
    # (x - 128) / 128 against (x - 127.5) / 127.5: source = a * card + b
    a, b = contract.input_affine(ct.INCEPTION, (128.0,) * 3, (128.0,) * 3)
    x = np.array([0.0, 100.0, 255.0])
    np.testing.assert_allclose(a[0] * (x - 128) / 128 + b[0], (x - 127.5) / 127.5, rtol=1e-12)


def test_mean_difference_cannot_be_folded_through_padding(tv_resnext50):
    card = dataclasses.replace(zoo.get_card("resnext50_32x4d"), mean=(103.52, 116.28, 123.675))
    ckpt = _ckpt("tv.pth", {k: v.numpy() for k, v in tv_resnext50.state_dict().items()})
    with pytest.raises(ConversionError, match=r"'/conv1/Conv' \(Conv\): resnext50_32x4d's "
                       r"mean/std differ .* pads its input"):
        ct.convert_checkpoint(ckpt, card, 64)


# -- end to end in real Caffe ---------------------------------------------------------------------

PAIRS = [
    ("resnext50_32x4d", "torchvision", 64),
    ("wrn50_2", "torchvision", 64),
    ("inception_v3_tv", "torchvision", 107),
    pytest.param("resnext101_32x4d", "timm", 64, marks=pytest.mark.slow),
    pytest.param("resnext101_64x4d", "timm", 64, marks=pytest.mark.slow),
    pytest.param("inception_v4_timm", "timm", 107, marks=pytest.mark.slow),
    pytest.param("inception_resnet_v2_timm", "timm", 107, marks=pytest.mark.slow),
]


def _shared_images(source, contract, n: int = 2):
    """Real ImageNet images from ../shared when present, prepared for each side, else None."""
    from caffezoo.validation.inputs import image_inputs

    if not (IMAGENET_SAMPLES / "val.txt").exists():
        return None
    return image_inputs(IMAGENET_SAMPLES, contract, source.input_norm, limit=n)


def _validate(source, card, zoo_net, out, inputs, contract, spec):
    from caffezoo.validation import card as card_side
    from caffezoo.validation.engine import open_caffe

    with open_caffe(f"{out}.prototxt", f"{out}.caffemodel") as caffe:
        return card_side.validate(source, card, zoo_net, caffe, inputs, contract, spec)


@pytest.mark.caffe
@pytest.mark.parametrize(("model", "layout", "size"), PAIRS)
def test_pair_converts_exactly(tmp_path, capsys, model, layout, size):
    from caffezoo.validation.inputs import random_inputs
    from caffezoo.validation.report import DEFAULT_TOLERANCE

    ckpt = tmp_path / "source.pth"
    ct.save_random_checkpoint(model, layout, ckpt, seed=1)
    out = tmp_path / "converted"
    assert cli.main(["convert", "--source", f"torch:{ckpt}", "--model", model, "--layout",
                     layout, "--input-size", str(size), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"({layout} layout)" in printed and "reversed" in printed

    card = zoo.get_card(model)
    zoo_net = card.build(size)
    source = open_card_source(f"torch:{ckpt}", card, zoo_net, layout)
    assert source.plan.layout == layout
    contract = card.contract(size)
    batches = [random_inputs(2, contract, source.input_norm, seed=5)]
    real = _shared_images(source, contract)
    if real is not None:
        batches.append(real)
    for inputs in batches:
        report = _validate(source, card, zoo_net, out, inputs, contract, str(ckpt))
        assert report.passed, report.lines()
        assert report.max_rel < DEFAULT_TOLERANCE
        (logits,) = report.outputs
        assert logits.top1_agree == report.count == len(inputs.caffe)
        assert logits.min_cosine > 0.999999


@pytest.mark.caffe
@pytest.mark.slow
def test_resnext50_at_the_real_size_on_real_images(tmp_path, tv_resnext50):
    """The cheapest model at 224, its zoo size, through the CLI with --images when the shared
    samples exist (random inputs otherwise)."""
    ckpt = tmp_path / "rx50.pth"
    torch.save(tv_resnext50.state_dict(), ckpt)
    out = tmp_path / "rx50"
    assert cli.main(["convert", "--source", f"torch:{ckpt}", "--model", "resnext50_32x4d",
                     "-o", str(out)]) == 0
    inputs = (["--images", str(IMAGENET_SAMPLES), "--limit", "3"]
              if (IMAGENET_SAMPLES / "val.txt").exists() else ["--random", "2"])
    assert cli.main(["validate", "--source", f"torch:{ckpt}", "--model", "resnext50_32x4d",
                     "--weights", f"{out}.caffemodel", *inputs]) == 0


@pytest.mark.caffe
def test_card_mean_difference_is_folded_exactly(tmp_path):
    """torchvision's Inception-v3 sees (x - 127.5) / 127.5; a card with the original zoo's
    (x - 128) / 128 still validates exactly, the difference folded into the unpadded first
    convolution and its BatchNorm."""
    from caffezoo import netio
    from caffezoo.validation.inputs import random_inputs

    card = dataclasses.replace(zoo.get_card("inception_v3_tv"), mean=(128.0,) * 3,
                               std=(128.0,) * 3)
    ckpt_path = tmp_path / "v3.pth"
    ct.save_random_checkpoint("inception_v3_tv", "torchvision", ckpt_path, seed=2)
    result = ct.convert(ckpt_path, card, 107)
    assert any("folded" in n for n in result.notes)
    netio.write_caffemodel(result.net, tmp_path / "v3.caffemodel")
    netio.write_prototxt(result.net, tmp_path / "v3.prototxt")
    zoo_net = card.build(107)
    source = open_card_source(f"torch:{ckpt_path}", card, zoo_net)
    contract = card.contract(107)
    report = _validate(source, card, zoo_net, tmp_path / "v3", random_inputs(
        2, contract, source.input_norm), contract, str(ckpt_path))
    assert report.passed, report.lines()
