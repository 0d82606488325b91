"""`--backend auto` (caffezoo.runtimes.auto): a measured probe picks the fastest runtime that is
exact on the net, remembers it per net and machine, and never picks one that fails or is
inexact there."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_runtimes import reference, tiny_net, tiny_weights

from caffezoo import netio
from caffezoo.runtimes import auto, open_runtime

pytestmark = [pytest.mark.caffe, pytest.mark.opencv, pytest.mark.torch]


@pytest.fixture
def tiny(tmp_path):
    proto, model = tmp_path / "tiny.prototxt", tmp_path / "tiny.caffemodel"
    netio.write_prototxt(tiny_net(), proto)
    netio.write_caffemodel(netio.attach_weights(tiny_net(), tiny_weights()), model)
    return proto, model


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "probes"
    monkeypatch.setenv("CAFFEZOO_PROBE_CACHE", str(folder))
    return folder


def test_probe_once_then_the_cache_keyed_by_net_batch_and_weights(tiny, cache, tmp_path,
                                                                   capsys):
    proto, model = tiny
    rt = open_runtime("auto", proto, model, threads=1, batch_size=3)
    probe = rt.probe
    assert not probe.cached and rt.backend == probe.backend
    assert probe.reference == "pycaffe" and probe.batch_size == 3 and probe.threads == 1
    # every installed candidate ran and was exact; each raced, or was too slow at batch 1 to
    # (more than SKIP x the fastest estimate); the fastest in the race won
    assert set(probe.estimate_ms) == set(auto.CANDIDATES) and not probe.excluded
    fastest = min(probe.estimate_ms.values())
    assert set(probe.skipped) == {b for b, ms in probe.estimate_ms.items()
                                  if ms > auto.SKIP * fastest}
    assert set(probe.ms_per_image) == set(auto.CANDIDATES) - set(probe.skipped)
    assert probe.backend == min(probe.ms_per_image, key=probe.ms_per_image.get)
    assert probe.race_batch == 3  # a tiny net: the race runs the asked batch
    assert set(probe.phases) == {"load", "reference", "check", "estimate", "race"}
    assert f"auto: {probe.backend}" in capsys.readouterr().err
    x = np.random.default_rng(1).normal(0, 1, (3, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(rt.forward(x)["prob"], reference(x, tiny_weights())["prob"],
                               atol=1e-6)
    files = list(cache.glob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["backend"] == probe.backend

    # the same net elsewhere (same text, same weight bytes): the cache, no new probe
    again_dir = tmp_path / "elsewhere"
    again_dir.mkdir()
    for f in (proto, model):
        (again_dir / f.name).write_bytes(f.read_bytes())
    again = open_runtime("auto", again_dir / proto.name, again_dir / model.name, threads=1,
                         batch_size=3)
    assert again.probe.cached and again.backend == probe.backend
    assert capsys.readouterr().err == ""
    assert len(list(cache.glob("*.json"))) == 1
    # another batch size, other weights: new keys, new probes
    open_runtime("auto", proto, model, threads=1, batch_size=1)
    other = tmp_path / "other.caffemodel"
    netio.write_caffemodel(netio.attach_weights(tiny_net(), tiny_weights(seed=5)), other)
    open_runtime("auto", proto, other, threads=1, batch_size=3)
    assert len(list(cache.glob("*.json"))) == 3
    # a cache file another version wrote is ignored, not fatal
    for f in cache.glob("*.json"):
        f.write_text("{not json")
    assert not open_runtime("auto", proto, model, threads=1, batch_size=3).probe.cached


def test_an_inexact_or_failing_backend_is_never_picked(tiny, cache, monkeypatch):
    """None of the real backends is inexact or fails on this net, so two are made so here
    (the only mocks in this file): openvino's outputs off by 0.1 %, torch failing to load."""
    from caffezoo.runtimes.openvino import OpenVINORuntime
    from caffezoo.runtimes.torch import TorchRuntime

    real = OpenVINORuntime._forward

    def off(self, batch, names):
        return {k: v * np.float32(1.001) for k, v in real(self, batch, names).items()}

    def broken(self, checked, threads=None):
        raise RuntimeError("the backend broke")

    monkeypatch.setattr(OpenVINORuntime, "_forward", off)
    monkeypatch.setattr(TorchRuntime, "__init__", broken)
    probe = open_runtime("auto", *tiny, batch_size=2).probe
    assert "differs from the reference" in probe.excluded["openvino"]
    assert probe.excluded["torch"] == "RuntimeError: the backend broke"
    assert probe.backend in ("onnxruntime", "opencv")
    assert set(probe.estimate_ms) == {"onnxruntime", "opencv"}
    assert set(probe.ms_per_image) | set(probe.skipped) == {"onnxruntime", "opencv"}


def test_a_slow_candidate_is_skipped_and_a_long_pass_races_a_smaller_batch(tiny, cache,
                                                                         monkeypatch):
    """The probe's bounds (runtimes/auto.py steps 2-3): torch made 30 ms slower per pass (the
    only mock here: no real backend is reliably that much slower on a tiny net) is skipped by
    its batch-1 estimate (others may be too, on a tiny net) and never races; with PASS_S tiny,
    the race runs a batch of 1 however large the asked batch, and the choice is cached for
    the asked batch."""
    import time

    from caffezoo.runtimes.torch import TorchRuntime

    real = TorchRuntime._forward

    def slow(self, batch, names):
        time.sleep(0.03)
        return real(self, batch, names)

    monkeypatch.setattr(TorchRuntime, "_forward", slow)
    monkeypatch.setattr(auto, "PASS_S", 1e-9)
    probe = open_runtime("auto", *tiny, batch_size=16).probe
    assert "torch" in probe.skipped and probe.estimate_ms["torch"] >= 30
    assert "torch" not in probe.ms_per_image and probe.backend != "torch"
    assert probe.race_batch == 1 and probe.batch_size == 16
    assert "too slow at batch 1 to race: " in probe.summary()
    assert f"torch {probe.estimate_ms['torch']:.2f}" in probe.summary()
    again = open_runtime("auto", *tiny, batch_size=16).probe
    assert again.cached and again.backend == probe.backend
