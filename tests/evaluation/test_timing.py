"""`caffe time` parsing and running, forward-only timing arithmetic, the machine's fp32 limit
(the best engine on a GEMM), random weights and `caffezoo time`. No assertion is about how fast
anything is."""

from __future__ import annotations

import json

import numpy as np
import pytest

from caffezoo import analysis, cli, netio
from caffezoo.evaluation import timing
from caffezoo.random_weights import random_weights
from caffezoo.runtimes import BACKENDS

TINY = """
name: "tiny"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "sc" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc"
        inner_product_param { num_output: 5 } }
"""
# conv: 4 outputs x 6 x 6 positions x (3 x 3 x 3) taps; fc: 5 x (4 x 6 x 6)
TINY_MACS = 4 * 6 * 6 * 27 + 5 * 144


@pytest.fixture
def tiny(tmp_path):
    net = netio.parse_prototxt(TINY)
    netio.write_prototxt(net, tmp_path / "tiny.prototxt")
    return tmp_path / "tiny.prototxt"


LOG = """\
I20261122 03:50:36.417532 15140 caffe.cpp:358] *** Benchmark begins ***
I20261122 03:50:36.417536 15140 caffe.cpp:359] Testing for 2 iterations.
I20261122 03:50:36.504762 15140 caffe.cpp:387] Iteration: 1 forward-backward time: 87 ms.
I20261122 03:50:36.582304 15140 caffe.cpp:387] Iteration: 2 forward-backward time: 77 ms.
I20261122 03:50:36.582397 15140 caffe.cpp:390] Average time per layer:
I20261122 03:50:36.582418 15140 caffe.cpp:393]      data\tforward: 0.004 ms.
I20261122 03:50:36.582440 15140 caffe.cpp:396]      data\tbackward: 0.0015 ms.
I20261122 03:50:36.582458 15140 caffe.cpp:393] my conv\tforward: 7.5 ms.
I20261122 03:50:36.582475 15140 caffe.cpp:396] my conv\tbackward: 12.25 ms.
I20261122 03:50:36.582475 15140 caffe.cpp:396] x_y_0_split\tforward: 0.5 ms.
I20261122 03:50:36.582475 15140 caffe.cpp:396] x_y_0_split\tbackward: 0 ms.
I20261122 03:50:36.582492 15140 caffe.cpp:399] Average Forward pass: 8.1 ms.
I20261122 03:50:36.582492 15140 caffe.cpp:401] Average Backward pass: 12.3 ms.
I20261122 03:50:36.582492 15140 caffe.cpp:403] Average Forward-Backward: 20.5 ms.
I20261122 03:50:36.582492 15140 caffe.cpp:405] Total Time: 41 ms.
I20261122 03:50:36.582492 15140 caffe.cpp:406] *** Benchmark ends ***
"""


def test_parse_caffe_time_log():
    rep = timing.parse_caffe_time(LOG, {"data": "Input", "my conv": "Convolution"})
    assert rep.iterations == 2
    assert [(la.name, la.type, la.forward_ms, la.backward_ms) for la in rep.layers] == [
        ("data", "Input", 0.004, 0.0015), ("my conv", "Convolution", 7.5, 12.25),
        ("x_y_0_split", "Split", 0.5, 0.0)]
    assert (rep.forward_ms, rep.backward_ms, rep.forward_backward_ms, rep.total_ms) == (
        8.1, 12.3, 20.5, 41.0)
    with pytest.raises(timing.CaffeTimeError, match="no benchmark summary"):
        timing.parse_caffe_time(LOG.split("Average Forward")[0])


@pytest.mark.caffe
def test_real_caffe_time(tiny):
    rep = timing.run_caffe_time(tiny, iterations=3, batch_size=2, threads=1)
    names = [la.name for la in rep.layers]
    assert names == ["data", "conv", "bn", "sc", "relu", "fc"]
    assert rep.iterations == 3 and rep.batch_size == 2
    assert rep.layers[1].type == "Convolution"
    assert rep.forward_ms >= 0 and rep.backward_ms >= 0
    assert rep.command[:4] == ["caffe", "time", "-model", str(tiny)]


@pytest.mark.caffe
def test_caffe_time_without_cpu_backward_is_reported(tmp_path):
    text = TINY + ('layer { name: "thr" type: "Threshold" bottom: "fc" top: "thr" '
                   "threshold_param { threshold: 0.5 } }\n")
    netio.write_prototxt(netio.parse_prototxt(text), tmp_path / "thr.prototxt")
    with pytest.raises(timing.CaffeTimeError) as err:
        timing.run_caffe_time(tmp_path / "thr.prototxt", iterations=1)
    msg = str(err.value)
    assert "exit 134" in msg and "'thr' (Threshold)" in msg and "no CPU backward" in msg
    assert "\n" not in msg


@pytest.mark.opencv
def test_random_weights_fit_and_macs(tiny):
    from caffezoo.runtimes import open_runtime

    net = netio.read_prototxt(tiny)
    weights = random_weights(net, seed=1)
    shapes = {s.name: s.param_shapes for s in analysis.analyze(net).layers if s.param_shapes}
    assert {k: [w.shape for w in v] for k, v in weights.items()} == shapes
    assert np.all(weights["bn"][1] > 0) and weights["bn"][2].tolist() == [1.0]
    path = tiny.parent / "r.caffemodel"
    timing.write_random_caffemodel(net, path, seed=1)
    rt = open_runtime("opencv", tiny, path)
    assert timing.macs_per_image(rt) == TINY_MACS
    secs = timing.time_forward(rt, batch_size=3, iterations=2, warmup=1)
    assert len(secs) == 2 and all(s > 0 for s in secs)


def test_summarize_arithmetic():
    t = timing.summarize("opencv", 2, 8, [0.5, 0.2, 0.4], macs=1_000_000_000, limit_gflops=160.0)
    assert t.ms_per_batch == pytest.approx(400.0)  # the median
    assert (t.ms_min, t.ms_max) == (pytest.approx(200.0), pytest.approx(500.0))
    assert t.spread == pytest.approx(2.5)
    assert t.images_per_s == pytest.approx(20.0)
    assert t.gflops == pytest.approx(2 * 1e9 * 8 / 0.4 / 1e9)  # 40
    assert t.limit_fraction == pytest.approx(40 / 160)


def test_gemm_limit_is_the_best_engine_on_a_real_product():
    engines = timing.installed_gemm_engines()
    assert "numpy" in engines and "onnxruntime" in engines  # the set-up installs them all
    lim = timing.measure_gemm_limit(threads=1, n=192, repeats=2)
    assert lim.threads == 1 and lim.n == 192 and not lim.failed
    assert set(lim.by_engine) == set(engines)
    assert lim.gflops == max(lim.by_engine.values()) == lim.by_engine[lim.engine]
    # each figure is 2 n^3 FLOPs over a time a 1-thread product can take: finite, positive,
    # below a bound no CPU core reaches (64 FLOPs/cycle at 10 GHz)
    assert all(0 < g < 640 for g in lim.by_engine.values())
    broken = timing.measure_gemm_limit(threads=1, n=64, repeats=1, engines=("numpy", "nope"))
    assert set(broken.by_engine) == {"numpy"} and "nope" in broken.failed


@pytest.mark.opencv
@pytest.mark.caffe
def test_time_command(tiny, tmp_path, capsys):
    out = tmp_path / "t.json"
    argv = ["time", "--prototxt", str(tiny), "-b", "1,4", "--threads", "1",
            "--iterations", "2", "--no-peak", "--layers", "--json", str(out)]
    assert cli.main(argv) == 0
    r = json.loads(out.read_text())
    assert r["macs_per_image"] == TINY_MACS
    # every installed runtime side by side (the set-up installs all five)
    assert [(f["backend"], f["batch_size"]) for f in r["forward"]] == [
        (b, n) for n in (1, 4) for b in BACKENDS]
    for f in r["forward"]:
        assert f["gflops"] == pytest.approx(
            2 * TINY_MACS * f["batch_size"] / (f["ms_per_batch"] / 1000) / 1e9)
        assert f["limit_fraction"] is None
        assert f["ms_min"] <= f["ms_per_batch"] <= f["ms_max"]
        assert f["spread"] == pytest.approx(f["ms_max"] / f["ms_min"])
    assert [la["name"] for la in r["caffe_time"]["layers"]][:2] == ["data", "conv"]
    printed = capsys.readouterr().out
    assert "caffe time (batch 1" in printed and "forward only" in printed
    assert "x pycaffe" in printed
    # --json without a file: only the JSON on stdout, the text on stderr
    assert cli.main([*argv[:-1], "--batch-size", "2"]) == 0
    captured = capsys.readouterr()
    r = json.loads(captured.out)
    assert [(f["backend"], f["batch_size"]) for f in r["forward"]] == [(b, 2) for b in BACKENDS]
    assert "forward only" in captured.err


def test_a_missing_optional_backend_is_exit_4_naming_its_extra(tiny, monkeypatch, capsys):
    """OpenVINO is an optional extra: absent (as `import openvino` fails on a machine without
    it), asking for it is the missing-framework exit with the install hint."""
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)
    argv = ["time", "--prototxt", str(tiny), "--backends", "openvino", "--no-limit",
            "--no-caffe-time", "--iterations", "1"]
    assert cli.main(argv) == 4
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "OpenVINO" in err and "caffezoo[openvino]" in err


@pytest.mark.opencv
@pytest.mark.caffe
def test_time_shows_progress_in_its_silent_phases(tiny, capsys, monkeypatch):
    """The fp32 limit and `caffe time` ran for seconds to minutes without a word: each has a
    bar (drawn on a terminal; recorded here)."""
    from test_graph_cli import SpyProgress

    from caffezoo.commands import time as time_command

    real_limit = timing.measure_gemm_limit
    monkeypatch.setattr(timing, "measure_gemm_limit",
                        lambda t: real_limit(t, n=128, repeats=1))  # the real one, smaller
    monkeypatch.setattr(time_command, "Progress", SpyProgress)
    SpyProgress.made = []
    assert cli.main(["time", "--prototxt", str(tiny), "--threads", "1", "--iterations", "1",
                     "--backends", "opencv"]) == 0
    bars = {bar.label: bar for bar in SpyProgress.made}
    assert bars["fp32 limit"].done == bars["fp32 limit"].total == 1
    assert bars["caffe time"].done == 1 and bars["caffe time"].notes == [
        "1 forward-backward iterations, batch 1"]
    assert "fp32 limit, 1 thread(s)" in capsys.readouterr().out


def test_time_takes_the_input_size_from_the_contract_beside_the_net(tiny, tmp_path, capsys):
    """The contract beside the net states its size (the prototxt's: one that contradicts it is
    refused, naming the file); --input-size overrides it and says so in one line."""
    from caffezoo.contract import InputContract

    path = tmp_path / "tiny.contract.json"
    out = tmp_path / "t.json"
    argv = ["time", "--prototxt", str(tiny), "--backends", "opencv", "--iterations", "1",
            "--no-caffe-time", "--no-limit", "--json", str(out)]
    path.write_text(InputContract(input_size=(10, 10), resize_size=12, num_classes=5,
                                  labels=None).to_json())
    assert cli.main(argv) == 3
    assert f"{path}: input contract: input_size 10x10, but {tiny} takes 8x8" in \
        capsys.readouterr().err
    path.write_text(InputContract(input_size=(8, 8), resize_size=9, num_classes=5,
                                  labels=None).to_json())
    assert cli.main(argv) == 0
    r = json.loads(out.read_text())
    assert r["model"]["input_shape"] == [1, 3, 8, 8]
    assert r["macs_per_image"] == TINY_MACS
    assert r["contract"] == {"path": str(path), "input_size": [8, 8], "overrides": []}
    err = capsys.readouterr().err
    assert f"input contract: {path} (input 8x8)" in err
    assert "flags override" not in err
    assert cli.main([*argv, "--input-size", "10"]) == 0
    r = json.loads(out.read_text())
    assert r["model"]["input_shape"] == [1, 3, 10, 10]
    assert r["macs_per_image"] == 4 * 8 * 8 * 27 + 5 * 4 * 8 * 8  # the net at 10 x 10
    assert "flags override the contract: input_size: 8,8 -> 10,10 (given)" in \
        capsys.readouterr().err


def test_time_model_reads_the_contract_beside_its_weights(tmp_path, capsys):
    """`time --model M --weights W`: the card is built at the size of the contract beside W
    (a conversion at another size than the card's default), and a contract of another class
    count than the card is refused, naming the file."""
    from caffezoo.contract import InputContract
    from caffezoo.zoo import get_card

    weights = tmp_path / "r50.caffemodel"
    timing.write_random_caffemodel(get_card("resnext50_32x4d").build(64), weights)
    path = tmp_path / "r50.contract.json"
    out = tmp_path / "t.json"
    argv = ["time", "--model", "resnext50_32x4d", "--weights", str(weights), "--backends",
            "opencv", "--iterations", "1", "--no-caffe-time", "--no-limit", "--json", str(out)]
    path.write_text(InputContract(input_size=(64, 64), resize_size=73, num_classes=1000,
                                  labels=None).to_json())
    assert cli.main(argv) == 0
    r = json.loads(out.read_text())
    assert r["model"]["input_shape"] == [1, 3, 64, 64]  # the card's default is 224
    assert r["contract"]["path"] == str(path)
    assert f"input contract: {path} (input 64x64)" in capsys.readouterr().err
    path.write_text(InputContract(input_size=(64, 64), resize_size=73, num_classes=10,
                                  labels=None).to_json())
    assert cli.main(argv) == 3
    assert (f"{path}: input contract: num_classes 10, but the zoo model resnext50_32x4d has "
            "1000 outputs") in capsys.readouterr().err


@pytest.mark.opencv
@pytest.mark.caffe
def test_no_measured_run_is_ever_above_the_stated_limit(tiny, tmp_path, capsys, monkeypatch):
    """The rule of `time`'s limit: a run that beats it means the GEMM reference ran under more
    load than the run; it is measured again, and where a run still beats it the limit becomes
    that run's own rate, said so. The load cannot be made on purpose, so the GEMM measurement
    is replaced (the only mock here) by one that reports 1e-6 GFLOP/s (a reference measured
    under crushing load), then, measured again, the real product or the same low figure."""
    real_limit = timing.measure_gemm_limit
    calls = []

    def loaded(t, recover: bool):
        calls.append(t)
        if recover and len(calls) > 1:
            return real_limit(t, n=256, repeats=2)
        return timing.GemmLimit(t, 256, 1, 1e-6, "numpy", {"numpy": 1e-6}, {}, "loaded")

    for recover in (True, False):
        calls.clear()
        monkeypatch.setattr(timing, "measure_gemm_limit", lambda t, r=recover: loaded(t, r))
        out = tmp_path / f"t{recover}.json"
        assert cli.main(["time", "--prototxt", str(tiny), "-b", "1,2", "--threads", "1",
                         "--iterations", "2", "--no-caffe-time", "--backends",
                         "opencv,onnxruntime", "--json", str(out)]) == 0
        r = json.loads(out.read_text())
        assert calls == [1, 1]  # before the runs, and again after them
        (limit,) = r["limit"]
        fractions = [f["limit_fraction"] for f in r["forward"]]
        assert all(0 < x <= 1 for x in fractions), fractions
        printed = capsys.readouterr()
        fastest = max(r["forward"], key=lambda f: f["gflops"])
        if recover:  # the real GEMM: far above a tiny net's rate
            assert limit["engine"] in limit["by_engine"] and limit["gflops"] > 1e-3
            assert "measured again, after the runs" in printed.out
        else:  # still beaten: the fastest run's rate is the limit, and a line says why
            assert limit["gflops"] == pytest.approx(fastest["gflops"])
            assert limit["engine"] == f"{fastest['backend']} on this net"
            assert max(fractions) == pytest.approx(1.0)
            assert "the limit is that run's rate" in printed.err
