"""Lua Torch .t7 models: the format round trip through torchfile, the Lua module semantics run in
PyTorch, the fb.resnet.torch naming, errors, and ResNeXt-50 / WRN-50-2 end to end in Caffe.

Lua Torch cannot run here. The fixtures are written by tests/helpers/t7writer.py (our own writer
of the binary format) from a PyTorch model's weights; the reader under test is torchfile's, so the
writer and the reader are independent implementations of the format.
"""

from __future__ import annotations

import numpy as np
import pytest
import t7writer as t7

from caffezoo import cli, zoo
from caffezoo.converters import pytorch as ct
from caffezoo.converters.pytorch import lua as lua_torch
from caffezoo.errors import ConversionError, InputFileError

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def _small_tree(seed: int = 0):
    """conv(3->4, 3x3, pad 1, with bias) - BN (pre-2016 running_std form) - ReLU - MaxPool 3/2
    ceil - View - Linear, and the same as torch.nn modules."""
    torch.manual_seed(seed)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    bn = torch.nn.BatchNorm2d(4, eps=1e-3).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    fc = torch.nn.Linear(4 * 4 * 4, 5)
    tree = t7.seq(
        t7.conv(conv, cudnn=False), t7.batchnorm(bn, running_std=True), t7.relu(),
        t7.LuaObject("nn.SpatialMaxPooling", {"kW": 3, "kH": 3, "dW": 2, "dH": 2, "padW": 0,
                                              "padH": 0, "ceil_mode": True}),
        t7.LuaObject("nn.View", {"size": t7.Storage(np.array([64], np.int64))}),
        t7.LuaObject("nn.Linear", {"weight": t7._f32(fc.weight), "bias": t7._f32(fc.bias)}))
    ref = torch.nn.Sequential(conv, bn, torch.nn.ReLU(),
                              torch.nn.MaxPool2d(3, 2, ceil_mode=True), torch.nn.Flatten(), fc)
    return tree, ref


def test_written_file_reads_back_through_torchfile(tmp_path):
    tree, ref = _small_tree()
    path = tmp_path / "small.t7"
    t7.save(tree, path)
    root = lua_torch.read_t7(path)
    assert [c.cls for c in root.children] == ["SpatialConvolution", "SpatialBatchNormalization",
                                              "ReLU", "SpatialMaxPooling", "View", "Linear"]
    conv = root.children[0]
    assert conv.package == "nn" and conv.field("padW") == 1 and conv.field("kH") == 3
    np.testing.assert_array_equal(lua_torch.conv_weight(conv), ref[0].weight.detach().numpy())
    bn = lua_torch.bn_tensors(root.children[1])
    # the variance comes back from 1 / sqrt(var + eps), to float32 precision
    np.testing.assert_allclose(bn["running_var"], ref[1].running_var.numpy(), rtol=1e-5)
    assert root.children[3].field("ceil_mode") is True


def test_lua_semantics_run_as_the_torch_modules(tmp_path):
    tree, ref = _small_tree(seed=1)
    path = tmp_path / "small.t7"
    t7.save(tree, path)
    x = torch.randn(2, 3, 9, 9)  # 9 -> ceil((9-3)/2)+1 = 4 with ceil_mode, 4x4x4 = 64 features
    got = lua_torch.LuaNet(lua_torch.read_t7(path))(x)
    with torch.no_grad():
        want = ref(x)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-5)


def test_errors_name_the_place(tmp_path):
    path = tmp_path / "odd.t7"
    t7.save(t7.seq(t7.LuaObject("nn.SpatialFullConvolution", {})), path)
    with pytest.raises(ConversionError, match=r"model\.modules\[0\]: nn\.SpatialFullConvolution"):
        lua_torch.LuaNet(lua_torch.read_t7(path))(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ConversionError, match=r"odd.t7: model\.modules\[0\]: unexpected "
                       r"nn\.SpatialFullConvolution in a ResNet-shaped model"):
        ct.load_checkpoint(path)
    good = tmp_path / "good.t7"
    t7.save(_small_tree()[0], good)
    # a valid tree, but no residual stages: a Linear where a ResNet has its blocks
    with pytest.raises(ConversionError, match=r"model\.modules\[5\]: unexpected nn\.Linear"):
        ct.load_checkpoint(good)
    cut = tmp_path / "cut.t7"
    cut.write_bytes(good.read_bytes()[:300])
    with pytest.raises(InputFileError, match="cut.t7: not a readable Lua Torch .t7 file"):
        lua_torch.read_t7(cut)


@pytest.fixture(scope="module")
def resnext50_t7(tmp_path_factory):
    model = ct.random_model("resnext50_32x4d", "torchvision", seed=4)
    path = tmp_path_factory.mktemp("lua") / "resnext_50_32x4d.t7"
    t7.save(t7.resnet_tree(model, pool_kernel=2), path)  # 64-px inputs: a 2x2 last map
    return path, model


def test_resnet_tree_is_named_like_torchvision(resnext50_t7):
    path, model = resnext50_t7
    ckpt, _ = ct.load_checkpoint(path)
    sd = model.state_dict()
    want = {k for k in sd if not k.endswith("num_batches_tracked")}
    assert set(ckpt.tensors) == want
    for key in ("conv1.weight", "layer2.0.downsample.0.weight", "layer4.2.bn3.running_var",
                "fc.bias"):
        np.testing.assert_array_equal(ckpt.tensors[key], sd[key].numpy())
    assert ckpt.eps["layer1.0.bn1"] == pytest.approx(1e-5)
    assert ckpt.pools["maxpool"].kernel == 3 and not ckpt.pools["maxpool"].ceil


def test_ceil_pooling_source_is_refused(tmp_path):
    model = ct.source_arch("resnext50_32x4d", "torchvision").build()
    # 64 px: pool1 rounding up gives 17x17 (the card's 16x16), layer4 3x3, averaged by 3x3
    tree = t7.resnet_tree(model, pool_kernel=3)
    tree.fields["modules"][3].fields["ceil_mode"] = True
    path = tmp_path / "ceil.t7"
    t7.save(tree, path)
    card = zoo.get_card("resnext50_32x4d")
    with pytest.raises(ConversionError, match=r"zoo layer 'pool1' is a MAX pooling 3x3 stride 2 "
                       r"pad 1 -> 16x16 where the source's '/maxpool/MaxPool' is a MAX pooling "
                       r"3x3 stride 2 pad 1 -> 17x17"):
        ct.convert(path, card, 64)


@pytest.mark.caffe
@pytest.mark.parametrize("model_name", ["resnext50_32x4d",
                                        pytest.param("wrn50_2", marks=pytest.mark.slow)])
def test_t7_model_converts_exactly(tmp_path, capsys, model_name, resnext50_t7):
    if model_name == "resnext50_32x4d":
        path = resnext50_t7[0]
    else:
        model = ct.random_model(model_name, "torchvision", seed=5)
        path = tmp_path / f"{model_name}.t7"
        t7.save(t7.resnet_tree(model, pool_kernel=2), path)
    out = tmp_path / "converted"
    assert cli.main(["convert", "--source", f"torch:{path}", "--model", model_name,
                     "--input-size", "64", "--dialect", "portable", "-o", str(out)]) == 0
    assert "(lua layout)" in capsys.readouterr().out
    assert cli.main(["validate", "--source", f"torch:{path}", "--model", model_name,
                     "--weights", f"{out}.caffemodel", "--random", "2", "--layers",
                     "--json"]) == 0
    import json

    report = json.loads(capsys.readouterr().out)
    assert report["layout"] == "lua" and report["passed"]
    assert report["outputs"][0]["top1_agree"] == 2 and report["first_divergence"] is None
    compared = {d["layer"] for d in report["layers"]}
    assert {"conv1", "pool1", "classifier"} <= compared
