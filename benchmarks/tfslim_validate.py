#!/usr/bin/env python
"""Errors of TF-slim conversions, measured as docs/conversion.md lists them: each net from a
seeded random slim checkpoint (calibrated at its default size), converted with
`caffezoo convert` at its default and a small size, then validated against TensorFlow on 10 of
the ../shared ImageNet samples and 4 seeded random images, in real Caffe and in OpenCV DNN.
Prints one Markdown table row per run.

    python benchmarks/tfslim_validate.py --work /tmp/cz-slim
    python benchmarks/tfslim_validate.py --work /tmp/cz-slim --models inception_v4_tfslim

Checkpoints already in --work (<model>.ckpt) are reused. Not a test: a run takes tens of
minutes on two cores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
IMAGES = REPO.parent / "shared" / "data" / "imagenet_samples"
RUNS = {"inception_v3_tfslim": (299, 139), "inception_v4_tfslim": (299, 139),
        "inception_resnet_v2_tfslim": (299, 139), "resnet101_v2_tfslim": (224, 160)}


def main() -> int:
    from caffezoo import cli, zoo
    from caffezoo.converters.registry import open_card_source
    from caffezoo.converters.tfslim import nets
    from caffezoo.converters.tfslim.random_init import save_random_checkpoint
    from caffezoo.validation import card as card_side
    from caffezoo.validation.engine import open_caffe
    from caffezoo.validation.inputs import image_inputs, random_inputs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--models", nargs="*", default=list(RUNS))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print("| zoo model | size | inputs | backend | max abs error | max rel. error | "
          "min cosine | top-1, top-5 agree |")
    print("|---|---|---|---|---|---|---|---|")
    for model in args.models:
        card = zoo.get_card(model)
        ckpt = args.work / f"{model}.ckpt"
        if not Path(f"{ckpt}.index").exists():
            save_random_checkpoint(nets.BY_CARD[model], ckpt, seed=0)
        for size in RUNS[model]:
            out = args.work / f"{model}-{size}"
            code = cli.main(["convert", "--source", f"tf-slim:{ckpt}", "--model", model,
                             "--input-size", str(size), "-o", str(out)])
            assert code == 0
            zoo_net = card.build(size)
            source = open_card_source(f"tf-slim:{ckpt}", card, zoo_net)
            contract = card.contract(size)
            inputs = [("4 random", random_inputs(4, contract, source.input_norm, seed=0))]
            if (IMAGES / "val.txt").exists():
                inputs.insert(0, ("10 ImageNet samples", image_inputs(
                    IMAGES, contract, source.input_norm, 10)))
            for what, x in inputs:
                for backend in ("pycaffe", "opencv"):
                    with open_caffe(f"{out}.prototxt", f"{out}.caffemodel", backend) as caffe:
                        r = card_side.validate(source, card, zoo_net, caffe, x, contract,
                                               str(ckpt))
                    (o,) = r.outputs
                    print(f"| {model} | {size} | {what} | {backend} | {o.max_abs:.2g} | "
                          f"{o.max_rel:.2g} | {o.min_cosine:.9f} | {o.top1_agree}/{r.count}, "
                          f"{o.top5_agree}/{r.count} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
