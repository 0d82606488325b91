"""MXNet checkpoints into zoo cards (`--model`): Gluon's resnet101_v2 fills the
`resnet101_v2_gluon` variant and is refused by the original `resnet101_v2` with the variant
named; Gluon's inceptionv3 fills `inception_v3_tv` (the card's mean/std folded into the first
convolution) and is refused by the original `inception_v3`. Validated against MXNet in real
Caffe through `caffezoo validate --model ... --layers`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from caffezoo import zoo
from caffezoo.cli import main
from caffezoo.converters import mxnet as cm
from caffezoo.errors import ConversionError
from caffezoo.graph.match import match

pytestmark = [pytest.mark.mxnet, pytest.mark.caffe]


@pytest.fixture(scope="module")
def gluon_resnet(tmp_path_factory):
    from caffezoo.converters.mxnet.gluon import export_random_gluon

    return export_random_gluon("resnet101_v2", tmp_path_factory.mktemp("r") / "r101", 64, 3)


@pytest.mark.slow
def test_resnet_v2_into_its_gluon_variant(gluon_resnet, tmp_path, capsys):
    out = tmp_path / "r101"
    assert main(["convert", "--source", f"mxnet:{gluon_resnet}", "--model",
                 "resnet101_v2_gluon", "--input-size", "64", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "resnet101_v2_gluon (mxnet-graph layout): 207 modules converted" in text
    # Gluon numbers its nets in a process (resnetv20_, resnetv21_, ...)
    assert "_batchnorm0_fwd: input channels reversed" in text
    assert main(["validate", "--source", f"mxnet:{gluon_resnet}", "--model",
                 "resnet101_v2_gluon", "--weights", f"{out}.caffemodel", "--random", "2",
                 "--layers", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["max_rel"] < 1e-5 and len(report["layers"]) > 300


def test_resnet_v2_refused_by_the_original_with_the_variant_named(gluon_resnet, tmp_path,
                                                                  capsys):
    out = tmp_path / "never"
    assert main(["convert", "--source", f"mxnet:{gluon_resnet}", "--model", "resnet101_v2",
                 "--input-size", "64", "-o", str(out)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "resnet101_v2 cannot hold" in err[0] and "zoo layer 'pool1'" in err[0]
    assert err[0].endswith("the checkpoint fits --model resnet101_v2_gluon")
    assert not list(tmp_path.glob("never*"))


@pytest.mark.slow
def test_inception_v3_into_the_torchvision_layout(tmp_path):
    from caffezoo.converters.mxnet.gluon import export_random_gluon
    from caffezoo.runtimes import open_runtime
    from caffezoo.validation.inputs import random_pixels

    prefix = export_random_gluon("inceptionv3", tmp_path / "iv3", 299, 4)
    with pytest.raises(ConversionError, match="zoo layer 'inception_c2_pool' is a MAX pooling "
                       ".* where the source's .* is a AVE pooling .*fits --model "
                       "inception_v3_tv"):
        cm.convert(prefix, zoo.get_card("inception_v3"))
    card = zoo.get_card("inception_v3_tv")
    result = cm.convert(prefix, card)
    assert any("mean/std folded in" in n for n in result.notes)
    from caffezoo import netio

    netio.write_prototxt(result.net, tmp_path / "c.prototxt")
    netio.write_caffemodel(result.net, tmp_path / "c.caffemodel")
    pixels = random_pixels(2, 299, seed=1)
    rt = open_runtime("pycaffe", tmp_path / "c.prototxt", tmp_path / "c.caffemodel")
    caffe = rt.forward(_card_input(card, pixels), ["classifier"])["classifier"]
    runner = cm.open_graph_runner(prefix, (2, 3, 299, 299))
    ref = list(runner.run(cm.GLUON_IMAGENET.apply(pixels)).values())[0]
    rel = np.abs(caffe - ref).max() / np.abs(ref).max()
    assert rel < 1e-5, rel


def _card_input(card, pixels):
    return card.contract(pixels.shape[-1]).apply(pixels)


def test_matcher_pairs_every_weighted_layer(gluon_resnet):
    from caffezoo.analysis import analyze
    from caffezoo.out_of_place import out_of_place

    graph = cm.read_graph(gluon_resnet, (1, 3, 64, 64))
    net = zoo.get_card("resnet101_v2_gluon").build(64)
    oop = out_of_place(net)
    shapes = {k: tuple(v) for k, v in analyze(oop.net).blob_shapes.items()}
    m = match(graph, oop.net, shapes, "classifier")
    assert m.mismatch is None
    weighted = [layer.name for layer in net.layer
                if layer.type in ("Convolution", "BatchNorm", "Scale", "InnerProduct")]
    assert set(weighted) <= set(m.pairs)
    assert m.pairs["data_bn"] == m.pairs["data_scale"]
    assert m.pairs["data_bn"].startswith("resnetv2") and \
        m.pairs["data_bn"].endswith("_batchnorm0_fwd")
    assert m.pairs["classifier"].endswith("_dense0_fwd")


@pytest.mark.slow
def test_input_scaling_ops_fold_into_the_card_convention(gluon_resnet, tmp_path, capsys):
    """The same Gluon net behind `(x - 127) / 64` scalar ops: into the card, the ops leave the
    graph and the map from the card's BGR mean/std to them goes into the input batch norm."""
    import shutil

    from caffezoo.frameworks import import_mxnet

    mx = import_mxnet()
    sym = mx.sym.load(f"{gluon_resnet}-symbol.json")
    scaled = sym(data=(mx.sym.var("data") - 127.0) / 64.0)
    prefix = tmp_path / "scaled"
    (tmp_path / "scaled-symbol.json").write_text(scaled.tojson())
    shutil.copy(f"{gluon_resnet}-0000.params", tmp_path / "scaled-0000.params")
    out = tmp_path / "r"
    assert main(["convert", "--source", f"mxnet:{prefix}", "--model", "resnet101_v2_gluon",
                 "--input-size", "64", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "folded into the input normalisation: RGB mean [127, 127, 127] std [64, 64, 64]" \
        in text
    assert "resnet101_v2_gluon's mean/std folded in" in text
    assert main(["validate", "--source", f"mxnet:{prefix}", "--model", "resnet101_v2_gluon",
                 "--weights", f"{out}.caffemodel", "--random", "2", "--layers",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["max_rel"] < 1e-5 and report["layers"]
