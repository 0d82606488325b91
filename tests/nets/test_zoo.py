"""The zoo registry, `caffezoo zoo`, `caffezoo generate` and docs/zoo.md.

Expected values come from the original README/evaluation settings (FACTS §4, §5), published
parameter and MAC counts (torchvision's model docs, the papers), and the sizes of the original
zoo's released .caffemodel files, which count every stored value independently of our code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from caffezoo import netio, zoo
from caffezoo.analysis import analyze
from caffezoo.cli import main
from caffezoo.commands.zoo import render_markdown
from caffezoo.errors import NetDefinitionError

REPO = Path(__file__).resolve().parents[2]
NAMES = ["resnet101_v2", "resnet152_v2", "resnet269_v2", "inception_v3", "inception_v4",
         "inception_resnet_v2", "resnext50_32x4d", "resnext101_32x4d", "resnext101_64x4d",
         "wrn50_2"]
AVAILABLE = [c for c in zoo.all_cards() if c.available]


def test_ten_cards_in_the_readme_order():
    assert [c.name for c in zoo.all_cards()] == NAMES


def test_variants_come_after_and_name_an_original():
    everything = zoo.all_cards(variants=True)
    assert [c.name for c in everything[:10]] == NAMES
    for card in everything[10:]:
        assert card.variant_of in NAMES
        assert zoo.get_card(card.name) is card
        original = zoo.get_card(card.variant_of)
        if card.available and original.available:
            # Same layer names as the original: the released weights' names still apply.
            ours = {layer.name for layer in original.build().layer}
            assert ours <= {layer.name for layer in card.build().layer}


def test_get_card_accepts_the_original_spellings():
    assert zoo.get_card("ResNet101-v2").name == "resnet101_v2"
    assert zoo.get_card("wrn50-2").name == "wrn50_2"
    assert zoo.get_card(" inception-resnet-v2 ").name == "inception_resnet_v2"


def test_unknown_model_names_every_valid_one():
    with pytest.raises(NetDefinitionError) as err:
        zoo.get_card("resnet50")
    message = str(err.value)
    assert "resnet50" in message and "\n" not in message
    assert all(name in message for name in NAMES)


@pytest.mark.parametrize("card", zoo.all_cards(), ids=lambda c: c.name)
def test_preprocessing_and_sizes_follow_the_original_settings(card):
    # FACTS §4: the evaluation settings per family.
    if card.family == "inception":
        assert (card.mean, card.std) == ((128.0,) * 3, (128.0,) * 3)
        assert [(s.base_size, s.crop_size) for s in card.eval_settings] == [(320, 299),
                                                                              (395, 395)]
        assert card.input_size == 299
    else:
        assert [(s.base_size, s.crop_size) for s in card.eval_settings] == [(256, 224),
                                                                              (320, 320)]
        assert card.input_size == 224
        if card.family == "resnet-v2":
            assert card.mean == (102.9801, 115.9465, 122.7717) and card.std == (1.0, 1.0, 1.0)
        else:
            # The ImageNet mean/std of 0..1 RGB images, x 255, in BGR order. FACTS §4 has
            # 103.52 from the original script, a typo for 0.406 * 255 = 103.53 (docs/zoo.md).
            assert card.mean == pytest.approx((0.406 * 255, 0.456 * 255, 0.485 * 255))
            assert abs(card.mean[0] - 103.52) <= 0.0100001
            assert card.std == pytest.approx((0.225 * 255, 0.224 * 255, 0.229 * 255))
            assert card.std == (57.375, 57.12, 58.395)
    # FACTS §3: only MXNet's Inception-v3 uses the ILSVRC2015 devkit class order.
    expected_val = "ILSVRC2015_val.txt" if card.name == "inception_v3" else "ILSVRC2012_val.txt"
    assert card.val_list == expected_val
    assert card.sources and all(s.framework and s.checkpoint for s in card.sources)
    assert card.original_prototxt.startswith("cls/")


@pytest.mark.parametrize("card", zoo.all_cards(), ids=lambda c: c.name)
def test_reference_figures_are_complete_and_consistent(card):
    small, large = (s.crop_size for s in card.eval_settings)
    assert {(a.crop_size, a.crops) for a in card.accuracy} == {(small, 1), (small, 12),
                                                               (large, 1), (large, 12)}
    for acc in card.accuracy:
        assert 70 < acc.top1 < acc.top5 < 100
    # The README's pattern: more crops and the larger scale never lose.
    assert card.reference(small, 12).top1 > card.reference(small, 1).top1
    assert card.reference(large, 1).top1 > card.reference(small, 1).top1
    assert [t.input_size for t in card.caffe_time] == [small, large]
    assert all(t.forward_ms > 0 and t.backward_ms > 0 for t in card.caffe_time)


def test_spot_checks_against_facts_table():
    # FACTS §5, a few cells.
    assert zoo.get_card("resnext50_32x4d").reference().top1 == 77.63
    assert zoo.get_card("inception_v4").reference(395, 12).top5 == 96.08
    assert zoo.get_card("resnet269_v2").reference(224, 12).top1 == 81.75
    t = zoo.get_card("inception_resnet_v2").caffe_time[0]
    assert (t.forward_ms, t.backward_ms) == (49.06, 54.83)


@pytest.mark.parametrize("card", [c for c in AVAILABLE if c.published_params_m],
                         ids=lambda c: c.name)
def test_parameters_within_half_a_percent_of_the_published_count(card):
    params_m = card.stats().params / 1e6
    assert abs(params_m - card.published_params_m) <= 0.005 * card.published_params_m


# At the pinned revision 27d644d every ResNet-v2 downsamples on the 3x3, as the published
# ResNet-101/152 (v1) figures count it, so all published MACs apply.
WITH_GMACS = [c for c in AVAILABLE if c.published_gmacs]


@pytest.mark.parametrize("card", WITH_GMACS, ids=lambda c: c.name)
def test_gmacs_match_the_published_figure(card):
    assert abs(card.stats().gmacs - card.published_gmacs) <= 0.005 * card.published_gmacs


def test_resnet152_v2_gmacs_are_the_published_figure():
    # Had the stride sat on the first 1x1 (as an older copy had it), the three downsampling
    # blocks would save 3/4 of their full-resolution conv1 MACs, 2% below the published 11.51.
    card = zoo.get_card("resnet152_v2")
    full = 56 * 56 * 256 * 128 + 28 * 28 * 512 * 256 + 14 * 14 * 1024 * 512
    assert abs(card.stats().gmacs - 11.51) <= 0.005 * 11.51
    assert abs((card.stats().macs - full * 3 // 4) / 1e9 - 11.51) > 0.005 * 11.51


@pytest.mark.parametrize("card", [c for c in AVAILABLE if c.release_mb], ids=lambda c: c.name)
def test_released_caffemodel_size_matches_the_stored_values(card):
    """4 bytes per stored value (BatchNorm statistics included) plus protobuf framing: the
    README's download size (MB = 2**20 bytes, one decimal) is at most 0.15 MiB above."""
    implied_mib = card.stats().blob_params * 4 / 2**20
    assert 0.0 <= card.release_mb - implied_mib + 0.05 <= 0.2


@pytest.mark.parametrize("card", AVAILABLE, ids=lambda c: c.name)
def test_build_default_and_other_size(card):
    net = card.build()
    assert analyze(net).inputs == {"data": (1, 3, card.input_size, card.input_size)}
    large = card.eval_settings[-1].crop_size
    result = analyze(card.build(large))
    assert result.inputs["data"] == (1, 3, large, large)
    assert result.blob_shapes["prob"] == (1, card.num_classes)
    assert card.stats(large).params == card.stats().params
    assert card.stats(large).macs > card.stats().macs


def test_missing_generator_is_a_clear_error():
    card = zoo.ModelCard(name="ghost", title="Ghost", family="none",
                         generator="caffezoo.generators.no_such_module:build")
    assert not card.available
    with pytest.raises(NetDefinitionError, match="ghost: generator module"):
        card.build()


def test_output_filenames():
    card = zoo.get_card("resnext50_32x4d")
    assert zoo.output_filename(card) == "resnext50_32x4d.prototxt"
    assert zoo.output_filename(card, 224) == "resnext50_32x4d.prototxt"
    assert zoo.output_filename(card, 320, "portable") == "resnext50_32x4d_320_portable.prototxt"
    assert zoo.output_filename(card, None, "round_mode") == "resnext50_32x4d_round_mode.prototxt"


# -- commands ---------------------------------------------------------------------------------

def test_zoo_table(capsys):
    assert main(["zoo"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["model", "family", "input"]
    rows = {line.split()[0]: line for line in lines[2:]}
    assert list(rows) == [c.name for c in zoo.all_cards(variants=True)]
    assert "variant of inception_v3" in rows["inception_v3_tv"]
    assert "77.63/93.69" in rows["resnext50_32x4d"]
    assert " 25.03 " in rows["resnext50_32x4d"] and " 4.23 " in rows["resnext50_32x4d"]


def test_zoo_json(capsys):
    assert main(["zoo", "--json", "resnext50-32x4d", "wrn50_2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in data] == ["resnext50_32x4d", "wrn50_2"]
    assert data[0]["stats"]["params"] == zoo.get_card("resnext50_32x4d").stats().params
    assert data[1]["generator_args"] == {"variant": "wrn50_2"}
    assert data[1]["eval_settings"][1] == {"base_size": 320, "crop_size": 320}
    assert any("elewise" in odd for odd in data[0]["oddities"])


def test_generate_one_model(tmp_path, capsys):
    assert main(["generate", "resnet101-v2", "-o", str(tmp_path)]) == 0
    path = tmp_path / "resnet101_v2.prototxt"
    assert path.read_text() == netio.format_prototxt(zoo.get_card("resnet101_v2").build())
    assert str(path) in capsys.readouterr().out


def test_generate_size_and_dialect(tmp_path):
    assert main(["generate", "resnext50_32x4d", "--input-size", "320", "--dialect",
                 "portable", "-o", str(tmp_path / "out")]) == 0
    net = netio.read_prototxt(tmp_path / "out" / "resnext50_32x4d_320_portable.prototxt")
    types = [layer.type for layer in net.layer]
    # pool1 rounds down: portable writes ceil pooling, then Slices and a Silence.
    assert types.count("Slice") >= 1 and types.count("Silence") == 1
    assert not any(layer.pooling_param.HasField("ceil_mode") for layer in net.layer)
    assert analyze(net).blob_shapes["pool1"] == (1, 64, 80, 80)  # floor((160+2-3)/2)+1


def test_generate_to_stdout(capsys):
    assert main(["generate", "wrn50_2", "--input-size", "160", "-o", "-"]) == 0
    text = capsys.readouterr().out
    assert analyze(netio.parse_prototxt(text)).inputs["data"] == (1, 3, 160, 160)


@pytest.mark.parametrize("argv, message, code", [
    # 2: usage errors; 3: bad input (an unknown model, a net that cannot be built); docs/cli.md
    (["generate"], "give either a MODEL or --all", 2),
    (["generate", "wrn50_2", "--all"], "give either a MODEL or --all", 2),
    (["generate", "vgg16"], "unknown model 'vgg16'", 3),
    (["generate", "resnet101_v2", "--input-size", "2", "-o", "-"], "input size 2 is too small",
     3),
    (["generate", "--all", "-o", "-"], "prints a single model", 2),
])
def test_generate_errors(argv, message, code, capsys):
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_generate_refuses_a_file_as_folder(tmp_path, capsys):
    """A bad output path is a bad input (3), as for every other command."""
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["generate", "wrn50_2", "-o", str(target)]) == 3
    assert "not a folder" in capsys.readouterr().err
    assert target.read_text() == "x"


def test_generate_one_model_to_a_prototxt_file(tmp_path, capsys):
    target = tmp_path / "my.prototxt"
    assert main(["generate", "wrn50_2", "--input-size", "160", "-o", str(target)]) == 0
    assert target.is_file() and str(target) in capsys.readouterr().out
    net = netio.read_prototxt(target)
    assert list(net.layer[0].input_param.shape[0].dim) == [1, 3, 160, 160]
    assert main(["generate", "--all", "-o", str(tmp_path / "all.prototxt")]) == 2
    assert not (tmp_path / "all.prototxt").exists()


# -- docs -------------------------------------------------------------------------------------

def test_docs_page_is_current():
    text = render_markdown()
    committed = (REPO / "docs" / "zoo.md").read_text()
    assert text == committed, "docs/zoo.md is stale; regenerate with `caffezoo zoo --write-docs`"


def test_docs_page_lists_every_model_and_oddity():
    text = (REPO / "docs" / "zoo.md").read_text()
    for card in zoo.all_cards(variants=True):
        assert f"## {card.name}" in text
        for odd in card.oddities:
            assert odd in text
    # the pinned revision's Eltwise order is documented; the stride position is settled
    assert "lists its Eltwise bottoms as (conv3, match_conv)" in text
    assert "disagree across revisions" not in text and "first 1x1" not in text


def test_write_docs_command(tmp_path, capsys):
    out = tmp_path / "zoo.md"
    assert main(["zoo", "--write-docs", str(out)]) == 0
    assert out.read_text() == (REPO / "docs" / "zoo.md").read_text()
