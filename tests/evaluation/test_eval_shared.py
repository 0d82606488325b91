"""The proof on real data (../shared/data): a real ImageNet-trained SqueezeNet v1.0 on 100 real
ImageNet images.

- 1-crop through `caffezoo eval` on every runtime: top-1 61/100, top-5 82/100 (FACTS §6, the
  original's 1-crop algorithm through OpenCV DNN 4.14).
- 10-, 12- and 144-crop equal a second, straightforward implementation written below from the
  description of the original algorithm (FACTS §4) and Caffe's `oversample`, run through
  cv2.dnn directly on the shared files (not through caffezoo's runtime).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from caffezoo import cli

pytestmark = [pytest.mark.shared, pytest.mark.opencv, pytest.mark.slow]

MEAN = np.array([104.0, 117.0, 123.0])
STD = np.array([1.0, 1.0, 1.0])
BASE, CROP = 256, 227
SCALES = (256, 288, 320, 352)


def _cli_args(squeezenet_dir, imagenet_samples, *extra):
    return ["eval", "--prototxt", str(squeezenet_dir / "deploy.prototxt"),
            "--weights", str(squeezenet_dir / "squeezenet_v1.0_dc.caffemodel"),
            "--val-list", str(imagenet_samples / "val.txt"),
            "--data-root", str(imagenet_samples), "--mean", "104,117,123", "--std", "1",
            "--base-size", str(BASE), "--crop-size", str(CROP), *extra]


@pytest.mark.parametrize("backend", ["opencv", pytest.param("pycaffe", marks=pytest.mark.caffe),
                                     "onnxruntime", pytest.param("torch", marks=pytest.mark.torch)])
def test_one_crop_top1_61_top5_82(squeezenet_dir, imagenet_samples, tmp_path, backend):
    out = tmp_path / "r.json"
    argv = _cli_args(squeezenet_dir, imagenet_samples, "--backend", backend,
                     "--json", str(out))
    assert cli.main(argv) == 0
    r = json.loads(out.read_text())
    assert r["images"] == {"listed": 100, "evaluated": 100, "failed": 0}
    assert r["correct"] == {"top1": 61, "top5": 82}


# -- a second implementation, the plain way ---------------------------------------------------


def _plain_crops(path: str, scheme: int) -> list[np.ndarray]:
    import cv2

    img = cv2.imread(path)
    h, w = img.shape[:2]
    short = min(h, w)
    img = cv2.resize(img, (int(w * BASE // short), int(h * BASE // short)))
    chans = cv2.split(img)
    img = cv2.merge([(chans[i] - MEAN[i]) / STD[i] for i in range(3)])

    def window(a, y, x, size):
        return a[y:y + size, x:x + size]

    def six(sq):
        n = sq.shape[0]
        m = (n - CROP) // 2
        far = n - CROP
        return [window(sq, 0, 0, CROP), window(sq, far, far, CROP), window(sq, 0, far, CROP),
                window(sq, far, 0, CROP), window(sq, m, m, CROP),
                cv2.resize(np.ascontiguousarray(sq), (CROP, CROP))]

    def with_mirror(sq):
        return six(sq) + six(np.ascontiguousarray(np.fliplr(sq)))

    hh, ww = img.shape[:2]
    if scheme == 10:  # caffe.io.oversample: corners, centre, then each crop flipped
        spots = [(0, 0), (0, ww - CROP), (hh - CROP, 0), (hh - CROP, ww - CROP),
                 (int(hh / 2.0 - CROP / 2.0), int(ww / 2.0 - CROP / 2.0))]
        crops = [window(img, y, x, CROP) for y, x in spots]
        return crops + [np.fliplr(c) for c in crops]
    if scheme == 12:
        return with_mirror(cv2.resize(img, (BASE, BASE)))
    assert scheme == 144
    crops = []
    for s in SCALES:
        big = cv2.resize(img, (ww * s // min(hh, ww), hh * s // min(hh, ww)))
        dy, dx = (big.shape[0] - s) // 2, (big.shape[1] - s) // 2
        for j in (0, 1, 2):
            crops += with_mirror(big[j * dy:j * dy + s, j * dx:j * dx + s])
    return crops


def _plain_scores(net, crops: list[np.ndarray]) -> np.ndarray:
    blob = np.stack(crops).astype(np.float32).transpose(0, 3, 1, 2)
    total = np.zeros(1000)
    for i in range(0, len(blob), 24):
        net.setInput(np.ascontiguousarray(blob[i:i + 24]))
        logits = net.forward().reshape(-1, 1000).astype(np.float64)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        total += (e / e.sum(axis=1, keepdims=True)).sum(axis=0)
    return total / len(crops)


@pytest.mark.parametrize("scheme, limit", [(10, 6), (12, 6), (144, 1)])
def test_multi_crop_equals_a_plain_implementation(squeezenet_dir, imagenet_samples, scheme,
                                                  limit):
    import cv2

    from caffezoo.evaluation import dataset
    from caffezoo.evaluation.classify import EvalConfig, evaluate
    from caffezoo.evaluation.preprocess import original
    from caffezoo.runtimes import open_runtime

    samples = dataset.read_val_list(imagenet_samples / "val.txt", imagenet_samples,
                                    limit=limit)
    net = cv2.dnn.readNetFromCaffe(str(squeezenet_dir / "deploy.prototxt"),
                                   str(squeezenet_dir / "squeezenet_v1.0_dc.caffemodel"))
    want = np.stack([_plain_scores(net, _plain_crops(s.path, scheme)) for s in samples])

    rt = open_runtime("opencv", squeezenet_dir / "deploy.prototxt",
                      squeezenet_dir / "squeezenet_v1.0_dc.caffemodel")
    pre = original(tuple(MEAN), tuple(STD), BASE, CROP, scheme,
                        scales=SCALES if scheme == 144 else ())
    runs = [evaluate(rt, samples, EvalConfig(pre, "pool_final", 1000, batch_size=bs,
                                             workers=wk, softmax=True, keep_scores=True))
            for bs, wk in [(16, 2), (50, 0)]]
    for r in runs:
        assert r.crops == scheme * limit
        np.testing.assert_allclose(r.scores, want, rtol=2e-4, atol=1e-6)
        for p, s in zip(r.predictions, want, strict=True):
            assert p.top == [int(i) for i in np.argsort(-s, kind="stable")[:5]]
        # batch size and worker count change nothing
        assert [p.top for p in r.predictions] == [p.top for p in runs[0].predictions]
        np.testing.assert_allclose(r.scores, runs[0].scores, rtol=1e-5, atol=1e-8)
