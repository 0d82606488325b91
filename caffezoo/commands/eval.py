"""`caffezoo eval` (and `python evaluation_cls.py`): ImageNet-style accuracy, 1/10/12/144-crop.

    caffezoo eval --prototxt deploy.prototxt --weights w.caffemodel --val-list val.txt \\
        --data-root images/ --mean 104,117,123 --base-size 256 --crop-size 227
    caffezoo eval --model resnext50_32x4d --weights r50.caffemodel --val-list val.txt \\
        --data-root ~/ILSVRC2012 --crop-num 12 --json r50.json
    caffezoo eval ... --crop-sizes 224,256,288,320 --plot acc.png

docs/evaluation.md describes every option, the crop schemes and the outputs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from caffezoo.cliargs import (
    add_batch_size,
    add_json,
    add_workers,
    deprecated,
    json_to_stdout,
    write_json,
)
from caffezoo.errors import CaffezooError, InputFileError, UsageError

# The original evaluation_cls.py's settings, used when neither --model nor an option says
# otherwise (its mean is the ResNet-v2 one).
ORIGINAL_MEAN = (102.9801, 115.9465, 122.7717)
DEFAULT_BACKEND = "auto"  # the fastest exact runtime for the net (runtimes/auto.py)
DEFAULT_BATCH = 16
DEFAULT_WORKERS = 2


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        msg = f"expected numbers separated by commas, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected 1 or 3 values (B,G,R), got {text!r}")
    return values


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        msg = f"expected integers separated by commas, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def add_runtime_options(g) -> None:
    """How the net runs (eval and table)."""
    g.add_argument("--backend",
                   choices=("auto", "onnxruntime", "openvino", "torch", "opencv", "pycaffe"),
                   default=DEFAULT_BACKEND,
                   help=f"runtime (default {DEFAULT_BACKEND}: the fastest one that is exact on "
                        "this net, measured by a short probe once per net and machine, then "
                        "cached; docs/runtimes.md)")
    g.add_argument("--threads", type=int, metavar="N",
                   help="inference threads, at most 4 per CPU (default: the library's, all "
                        "cores; with --executor ray: per worker, default 1)")
    g.add_argument("--output-blob", metavar="NAME",
                   help="blob whose scores are averaged (default 'prob', else the net's output)")
    g.add_argument("--softmax", choices=("auto", "yes", "no"), default="auto",
                   help="softmax each crop's scores before averaging; auto (default): when the "
                        "output blob does not come from a Softmax layer")


def _channel_order(text: str) -> str:
    value = text.upper()
    if value not in ("BGR", "RGB"):
        raise argparse.ArgumentTypeError(f"expected bgr or rgb, got {text!r}")
    return value


def add_contract_options(g) -> None:
    """The contract's pipeline fields a bare net needs said (eval, table)."""
    from caffezoo.contract import INTERPOLATIONS, RESIZE_KINDS

    g.add_argument("--channel-order", type=_channel_order, metavar="bgr|rgb",
                   help="the net's input channel order (a bare net: BGR, the original's)")
    g.add_argument("--resize", choices=RESIZE_KINDS,
                   help="opencv: the original's pipeline (cv2 decode and resize, no "
                        "antialiasing); pil: torchvision's and timm's (PIL decode, antialiased "
                        "resize, their centre-crop rounding); a bare net: opencv")
    g.add_argument("--interpolation", choices=INTERPOLATIONS,
                   help="the resize's filter (a bare net: bilinear)")


def add_data_options(p: argparse.ArgumentParser) -> None:
    d = p.add_argument_group("data (--val-list or --data-dir)")
    source = d.add_mutually_exclusive_group(required=True)
    source.add_argument("--val-list", metavar="FILE",
                        help="'path label' per line (labels 0-999 in the usual lists)")
    source.add_argument("--data-dir", metavar="DIR",
                        help="an ImageFolder tree: one sub-folder per class, classes in sorted "
                             "folder-name order (ImageNet wnids: the synset order), label = index")
    d.add_argument("--data-root", default="", metavar="DIR",
                   help="folder the list's paths are relative to")
    d.add_argument("--limit", type=int, metavar="N", help="only the first N images")
    d.add_argument("--label-offset", type=int, default=None, metavar="K",
                   help="add K to every label (1 for a 1001-class head with background at 0; "
                        "default: the contract's label_offset, else 0)")
    d.add_argument("--class-map", metavar="FILE",
                   help="net index per dataset label: one integer per line, or "
                        "'label index' pairs (applied before --label-offset)")
    d.add_argument("--on-error", choices=("fail", "skip"), default="fail",
                   help="a missing, unreadable or corrupt image stops the run (fail, default) "
                        "or is skipped, counted and listed (skip)")


def add_batch_options(r) -> None:
    add_batch_size(r, default=DEFAULT_BATCH,
                   help=f"crops per forward pass (default {DEFAULT_BATCH})")
    add_workers(r, default=DEFAULT_WORKERS,
                help=f"image decoding threads (default {DEFAULT_WORKERS}; 0 = in line)")
    r.add_argument("--worker-kind", choices=("auto", "thread", "process"), default="auto",
                   help="decoders as threads or processes; auto (default): threads, for every "
                        "backend (processes only compete with the forward pass on few cores; "
                        "docs/benchmarks.md)")


def add_executor_options(p: argparse.ArgumentParser) -> None:
    from caffezoo.evaluation.executors import DEFAULT_UNIT, EXECUTORS

    x = p.add_argument_group("executor (docs/evaluation.md#long-runs)")
    x.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local (default): this process; ray: Ray workers, each with its own "
                        "runtime and decoders (pip install caffezoo[ray])")
    x.add_argument("--ray-address", metavar="ADDR",
                   help="the Ray cluster to use: auto (one started with `ray start` here), "
                        "HOST:PORT or ray://HOST:PORT (default: a local Ray for this run)")
    x.add_argument("--ray-workers", type=int, metavar="N",
                   help="Ray workers (default: the cluster's CPUs / --threads)")
    x.add_argument("--unit-size", type=int, default=DEFAULT_UNIT, metavar="N",
                   help=f"images per work unit (default {DEFAULT_UNIT}): what a Ray worker is "
                        "handed, and what a resumed run redoes at most")


def add_arguments(p: argparse.ArgumentParser) -> None:
    m = p.add_argument_group("model")
    m.add_argument("--model", metavar="ZOO_NAME",
                   help="a zoo model: its prototxt is generated at the crop size and its "
                        "preprocessing (mean, std, base and crop size) becomes the default")
    m.add_argument("--prototxt", metavar="P", help="deploy prototxt (instead of --model's)")
    m.add_argument("--weights", metavar="W", help=".caffemodel (required)")
    add_runtime_options(m)
    add_data_options(p)
    c = p.add_argument_group(
        "preprocessing (default: the input contract beside the net, X.contract.json, else the "
        "zoo card's, else the original evaluation_cls.py's; a flag overrides the contract, and "
        "the run says so)")
    c.add_argument("--mean", type=_floats, metavar="B,G,R",
                   help="per-channel mean, B,G,R order on 0-255 pixels")
    c.add_argument("--std", type=_floats, metavar="B,G,R",
                   help="per-channel std, B,G,R order on 0-255 pixels")
    c.add_argument("--base-size", type=int, metavar="S", help="short side after resizing")
    c.add_argument("--crop-size", type=int, metavar="C", help="crop size (the net's input)")
    add_contract_options(c)
    c.add_argument("--crop-num", type=int, choices=(1, 10, 12, 144), default=1,
                   help="1 centre, 10 corners+centre+mirrors, 12 the original's mirror-crop, "
                        "144 the original's multi-crop")
    c.add_argument("--scales", type=_ints, metavar="S1,S2,..",
                   help="144-crop short sides (default: the original's list for the crop size)")
    r = p.add_argument_group("run and output")
    add_batch_options(r)
    r.add_argument("--top-k", type=_ints, default=(1, 5), metavar="K1,K2",
                   help="accuracies to report (default 1,5)")
    add_json(r, "the results", "; the summary text then goes to stderr")
    deprecated(r, "--results", "json", "--json FILE")
    r.add_argument("--results-csv", metavar="FILE.csv",
                   help="write one row per crop size with timm's columns (model, top1, "
                        "top1_err, top5, top5_err, param_count, img_size, crop_pct, "
                        "interpolation) and crop_num, backend; default with --json FILE: "
                        "FILE.csv beside it")
    r.add_argument("--log", metavar="FILE", help="write the summary in the original's wording")
    r.add_argument("--predictions", metavar="FILE.csv", help="write per-image predictions")
    r.add_argument("--verbose", action="store_true",
                   help="print the original's per-image line for every image")
    r.add_argument("--crop-sizes", type=_ints, metavar="C1,C2,..",
                   help="evaluate at each crop size (a sweep, summed up in one table); base "
                        "size: the zoo card's for each crop, else max(base, crop), unless "
                        "--base-sizes")
    r.add_argument("--base-sizes", type=_ints, metavar="S1,S2,..",
                   help="base size per --crop-sizes entry")
    r.add_argument("--plot", metavar="FILE.png", help="draw top-k accuracy against crop size")
    g = p.add_argument_group("long runs (docs/evaluation.md#long-runs)")
    g.add_argument("--record", metavar="FILE",
                   help="record every image's result in FILE as the run goes (a sweep: one "
                        "file per crop size, FILE_crop224 ...), so that --resume can continue")
    g.add_argument("--resume", action="store_true",
                   help="continue the --record of an interrupted run (refused, naming what "
                        "differs, if the model, list or settings changed)")
    add_executor_options(p)


# -- the model ----------------------------------------------------------------------------


@dataclass
class ModelSource:
    """Where the net comes from: a zoo card (generated prototxt) or the user's prototxt."""

    card: object | None
    prototxt: Path | None
    weights: Path

    @property
    def label(self) -> str:
        return str(self.weights)

    def declared_size(self) -> int | None:
        if self.prototxt is None:
            return None
        from caffezoo import analysis, netio

        stats = analysis.analyze(netio.read_prototxt(self.prototxt))
        if len(stats.inputs) != 1:
            return None
        shape = next(iter(stats.inputs.values()))
        return int(shape[2]) if len(shape) == 4 and shape[2] == shape[3] else None

    def prototxt_at(self, size: int, tmp: Path) -> Path:
        """A prototxt whose input is size x size: the user's file when it already is, else a
        copy with the input resized (or the zoo generator's net at that size)."""
        from caffezoo import netio

        if self.prototxt is None:
            net = self.card.build(size)
        else:
            if self.declared_size() == size:
                return self.prototxt
            net = netio.read_prototxt(self.prototxt)
            inputs = [la for la in net.layer if la.type == "Input"]
            if len(inputs) != 1 or not inputs[0].input_param.shape:
                raise CaffezooError(f"{self.prototxt}: cannot set the input size (needs one "
                                    "Input layer)")
            dims = inputs[0].input_param.shape[0].dim
            if len(dims) != 4:
                raise CaffezooError(f"{self.prototxt}: input is not NCHW")
            dims[2] = dims[3] = size
        path = tmp / f"net_{size}.prototxt"
        netio.write_prototxt(net, path)
        return path


def resolve_model(args) -> ModelSource:
    card = None
    if args.model:
        from caffezoo.zoo import get_card

        card = get_card(args.model)
    if card is None and not args.prototxt:
        raise CaffezooError("give --model ZOO_NAME or --prototxt P")
    if not args.weights:
        raise CaffezooError("--weights is required (a .caffemodel)")
    prototxt = Path(os.path.expanduser(args.prototxt)) if args.prototxt else None
    return ModelSource(card, prototxt, Path(os.path.expanduser(args.weights)))


@dataclass
class Resolved:
    """The input contract a run evaluates with, where it came from, and what flags changed."""

    contract: object              # caffezoo.contract.InputContract
    source: str                   # the contract file, "zoo card X", or "" (a bare net)
    overrides: list[str]          # "field: old -> new (given)" per flag that changed it
    from_card: bool = False       # the card's rule gives the resize for other crop sizes


def bare_contract(args, source: ModelSource):
    """A bare prototxt: the original evaluation_cls.py's defaults (BGR, ResNet-v2 mean, std 1,
    OpenCV bilinear resize of the short side to 256, the prototxt's input size) with the flags
    applied, as before contracts existed."""
    from caffezoo.contract import InputContract

    crop = args.crop_size or source.declared_size() or 224
    base = args.base_size or max(256, crop)  # the original script's 256, never below the crop
    order = args.channel_order or "BGR"
    mean, std = tuple(args.mean or ORIGINAL_MEAN), tuple(args.std or (1.0, 1.0, 1.0))
    if order == "RGB":  # --mean and --std are B,G,R
        mean, std = mean[::-1], std[::-1]
    return InputContract(
        channel_order=order, pixel_scale=255.0, mean=mean, std=std, input_size=(crop, crop),
        resize_size=base, interpolation=args.interpolation or "bilinear",
        resize=args.resize or "opencv", labels=None, num_classes=None,
        origin="the original evaluation_cls.py's defaults and the flags")


def _close(a, b) -> bool:
    return all(abs(x - y) <= 1e-6 * max(1.0, abs(y)) for x, y in zip(a, b, strict=True))


def apply_flags(args, contract, at_crop=None):
    """The contract with the preprocessing flags applied: (new contract, one line per value
    that changed). --mean/--std are B,G,R on 0..255 pixels whatever the contract's order and
    scale; --channel-order alone keeps each colour's mean and std; --crop-size alone moves the
    resize with it (`at_crop`: the zoo card's rule, else the contract's crop_pct)."""
    values: dict[str, object] = {}
    if args.crop_size and args.crop_size != contract.crop_size:
        moved = (at_crop or contract.at_crop)(args.crop_size)
        values.update(input_size=moved.input_size, resize_size=moved.resize_size)
    if args.base_size:
        values["resize_size"] = args.base_size
    order = args.channel_order or contract.channel_order
    given = False
    if args.mean or args.std:
        bgr_mean, bgr_std = contract.bgr_normalization_255()
        mean, std = tuple(args.mean or bgr_mean), tuple(args.std or bgr_std)
        # a flag equal to the contract's value on 0..255 (0.5 on 0..1 is 127.5) changes nothing
        given = not (_close(mean, bgr_mean) and _close(std, bgr_std))
    if given:
        # the contract's own values restated on 0..255 (silently: the same normalisation), so
        # that only what the flags change is said
        m255, s255 = contract.normalization_255()
        contract = replace(contract, pixel_scale=255.0, mean=m255, std=s255)
        if order == "RGB":
            mean, std = mean[::-1], std[::-1]
        values.update(mean=mean, std=std)
    elif order != contract.channel_order:
        values.update(mean=contract.mean[::-1], std=contract.std[::-1])
    values.update(channel_order=args.channel_order, resize=args.resize,
                  interpolation=args.interpolation)
    return contract.overridden(**values)


def resolve_contract(args, source: ModelSource) -> Resolved:
    """The contract beside the net (X.contract.json beside the prototxt or the weights), else
    the zoo card's, else the original evaluation_cls.py's defaults (a bare prototxt); the
    preprocessing flags override it, and the run says so."""
    from caffezoo.contract import find_contract

    found = find_contract(source.prototxt, source.weights)
    card = source.card
    if found is not None:
        contract, path = found
        new, said = apply_flags(args, contract)
        return Resolved(new, str(path), said)
    if card is not None:
        contract = card.contract(args.crop_size or None)  # the card's rule for this crop
        new, said = apply_flags(args, contract, card.contract)
        return Resolved(new, f"zoo card {card.name}", said, from_card=True)
    return Resolved(bare_contract(args, source), "", [])


def resolve_pipeline(args, source: ModelSource):
    """(the Pipeline for the first crop size, the Resolved contract)."""
    from caffezoo.evaluation.preprocess import Pipeline

    resolved = resolve_contract(args, source)
    return Pipeline(resolved.contract, args.crop_num, tuple(args.scales or ())), resolved


def sweep_settings(args, pre, card=None, resolved: Resolved | None = None) -> list:
    """One Pipeline per --crop-sizes entry (or the one given). The resize before each crop:
    --base-sizes, else the zoo card's rule, else the contract's crop_pct (a contract file),
    else max(base, crop) (a bare net, or --base-size)."""
    if not args.crop_sizes:
        if args.base_sizes or args.plot:
            raise CaffezooError("--base-sizes and --plot go with --crop-sizes")
        return [pre]
    if args.base_sizes and len(args.base_sizes) != len(args.crop_sizes):
        raise CaffezooError("--base-sizes needs one value per --crop-sizes entry")
    contract = pre.contract
    from_card = resolved.from_card if resolved is not None else card is not None
    from_file = resolved is not None and bool(resolved.source) and not from_card
    out = []
    for i, crop in enumerate(args.crop_sizes):
        if args.base_sizes:
            base = args.base_sizes[i]
        elif from_card and not args.base_size:
            base = card.contract(crop).resize_size  # the card's rule for each crop
        elif from_file and not args.base_size:
            base = contract.at_crop(crop).resize_size  # the contract's crop_pct
        else:
            base = max(pre.base_size, crop)
        scales = pre.scales if len(args.crop_sizes) == 1 else ()
        sized = replace(contract, input_size=(crop, crop), resize_size=base)
        out.append(replace(pre, contract=sized, scales=scales))
    return out


# -- the run ------------------------------------------------------------------------------


def _suffixed(path: str, crop: int, many: bool) -> str:
    if not many:
        return path
    p = Path(path)
    return str(p.with_name(f"{p.stem}_crop{crop}{p.suffix}"))


def evaluate_one(args, source: ModelSource, pre, samples_raw, tmp: Path, label: str = "",
                 record_path: str | None = None, folder=None, resolved: Resolved | None = None):
    """Open the runtime at this crop size, check labels (and that an ImageFolder `folder`'s
    classes fit the net), run on the chosen executor (recording every image in `record_path`
    when given); returns (result, info)."""
    from caffezoo.evaluation import dataset, executors, report
    from caffezoo.evaluation.classify import (
        EvalConfig,
        Failure,
        ends_in_softmax,
        probe_classes,
        worker_kind_for,
    )
    from caffezoo.evaluation.record import Record
    from caffezoo.progress import Progress
    from caffezoo.runtimes import open_runtime

    prototxt = source.prototxt_at(pre.crop_size, tmp)
    on_ray = args.executor == "ray"
    # Ray workers get one thread each unless told: several workers share a machine's cores.
    threads = args.threads or (1 if on_ray else None)
    backend = args.backend
    if backend == "auto" and args.resume and record_path:
        # the backend the record was made with, not a new probe's choice (another machine's
        # may differ, and the resume would be refused)
        from caffezoo.evaluation.record import recorded_fingerprint
        from caffezoo.runtimes import BACKENDS

        recorded = (recorded_fingerprint(record_path) or {}).get("backend")
        backend = recorded if recorded in BACKENDS else "auto"
        if backend != "auto":
            print(f"--backend auto: {backend}, the record's", file=sys.stderr)
    runtime = open_runtime(backend, prototxt, source.weights, threads=threads,
                           batch_size=args.batch_size)
    blob = args.output_blob
    if blob is None:
        names = runtime.blob_names()
        outputs = runtime.checked.analysis.outputs or runtime.output_names  # not silenced ones
        blob = "prob" if "prob" in names else (outputs[-1] if outputs else names[-1])
    num_classes = probe_classes(runtime, pre.crop_size, blob)
    softmax = (args.softmax == "yes" or
               (args.softmax == "auto" and not ends_in_softmax(runtime.checked.net, blob)))

    class_map = dataset.read_class_map(args.class_map) if args.class_map else None
    data_name = args.val_list or args.data_dir
    label_offset = (args.label_offset if args.label_offset is not None
                    else pre.contract.label_offset)
    if folder is not None and class_map is None:
        folder.check_fits(num_classes, label_offset, blob, pre.contract.labels)
    samples = dataset.map_labels(samples_raw, label_offset, class_map, data_name)
    dataset.check_labels(samples, num_classes, data_name)  # before any image is read
    missing = dataset.check_files_exist(samples)
    if missing and args.on_error == "fail":
        first = missing[0][0]
        if len(missing) == len(samples):  # every one: the list is relative to another folder
            hint = ("--data-root DIR names the folder the listed paths are relative to"
                    + (f", not {args.data_root}" if args.data_root else ""))
        else:
            hint = "--on-error skip evaluates the rest"
        raise InputFileError(f"{first.path}: missing file ({data_name}:{first.line}; "
                             f"{len(missing)} of {len(samples)} listed images are missing; "
                             f"{hint})")

    config = EvalConfig(pipeline=pre, output_blob=blob, num_classes=num_classes,
                        batch_size=args.batch_size, workers=args.workers, top_k=args.top_k,
                        on_error=args.on_error, softmax=softmax,
                        worker_kind=args.worker_kind)
    backend, param_count = runtime.backend, runtime.checked.analysis.total_params
    job = executors.EvalJob(prototxt, source.weights, backend, threads, config, samples,
                            args.unit_size)
    fingerprint = executors.fingerprint(job) if record_path else {}
    with Record.open(record_path, fingerprint, len(samples), resume=args.resume) as record:
        tally = executors.Tally(job, record)
        if record_path and args.resume:
            dropped = " (a last line cut short was dropped)" if record.dropped_tail else ""
            print(f"resuming {record_path}: {tally.done} of {len(samples)} images are "
                  f"recorded{dropped}", file=sys.stderr)
        progress = Progress(len(samples), label=label, initial=tally.done)
        workers_note = {"text": ""}

        def note() -> str:
            return " | ".join(t for t in (report.running_note(tally.result),
                                          workers_note["text"]) if t)

        def on_new(entries) -> None:
            for entry in entries:
                item = tally.add(entry)
                progress.update(1, note())
                if args.verbose:
                    n = tally.done
                    if isinstance(item, Failure):
                        print(f"Skipping image: {n}/{len(samples)}  {item.reason}", flush=True)
                    else:
                        print(report.original_image_line(n, len(samples), item, tally.result),
                              flush=True)

        def on_state(states) -> None:
            from caffezoo.evaluation.ray_executor import worker_note

            workers_note["text"] = worker_note(states)
            progress.note(note())

        started = dt.datetime.now()
        try:
            if on_ray:
                from caffezoo.evaluation.ray_executor import RayOptions, run_ray

                if hasattr(runtime, "close"):
                    runtime.close()
                runtime = None  # the workers open their own
                options = RayOptions(args.ray_address, args.ray_workers, args.debug)
                session = run_ray(job, record, options, on_new, on_state)
            else:
                session = executors.run_local(job, runtime, record, on_new)
        finally:
            progress.close()
        result = tally.final(record, session)
        ended = dt.datetime.now()
    info = report.RunInfo(
        model=source.label,
        prototxt=(str(source.prototxt) if source.prototxt else
                  f"generated: caffezoo.zoo {source.card.name}, input {pre.crop_size}"),
        weights=str(source.weights), zoo_name=getattr(source.card, "name", None),
        val_list=data_name, data_root=args.data_root, backend=backend, threads=threads,
        batch_size=args.batch_size, workers=args.workers,
        worker_kind=worker_kind_for(args.worker_kind),
        output_blob=blob, softmax=softmax, label_offset=label_offset, class_map=args.class_map,
        on_error=args.on_error, limit=args.limit, started=started, ended=ended,
        data_dir=args.data_dir, param_count=param_count,
        name=getattr(source.card, "name", None) or Path(source.weights).stem,
        session=session, unit_size=job.unit_size, record=record_path, resumed=tally.resumed,
        # this run counts too when a resume found nothing left to do (it started no session)
        sessions=record.sessions + (0 if record.started_here else 1),
        contract_source=resolved.source if resolved else "",
        contract_overrides=tuple(resolved.overrides) if resolved else ())
    return result, info


def results_csv_path(results_csv: str | None, results: str | None) -> str | None:
    """--results-csv, else the JSON results file's path with a .csv suffix, else none."""
    if results_csv or not results:
        return results_csv
    path = Path(results)
    derived = path.with_suffix(".csv")
    return str(derived if derived != path else path.with_name(path.name + ".csv"))


def check_numbers(args) -> None:
    """Counts and sizes that must be positive, refused before any work (0 would otherwise
    mean "default" for some and crash others)."""
    for flag, low in (("limit", 1), ("threads", 1), ("batch_size", 1), ("workers", 0),
                      ("base_size", 1), ("crop_size", 1), ("unit_size", 1), ("ray_workers", 1)):
        value = getattr(args, flag, None)
        if value is not None and value < low:
            raise UsageError(f"--{flag.replace('_', '-')} must be at least {low}, got {value}")
    from caffezoo.limits import check_parallel

    check_parallel("--threads", args.threads)
    check_parallel("--workers", args.workers)


def scale_notes(args) -> list[str]:
    """A --mean or --std that looks like one for 0-1 pixels (torchvision's 0.485, 0.229...):
    the pixels here are 0-255, so it would normalise almost nothing."""
    notes = []
    for flag, values in (("--mean", args.mean), ("--std", args.std)):
        if values and 0 < max(abs(v) for v in values) < 1:
            scaled = ",".join(f"{v * 255:g}" for v in values)
            notes.append(f"note: {flag} {','.join(f'{v:g}' for v in values)} looks like one "
                         f"for 0-1 pixels; eval's pixels are 0-255 (times 255: {scaled}), in "
                         "B,G,R order")
    return notes


def check_executor(args) -> None:
    """Executor options that go together, and Ray importable, before any work."""
    if args.executor != "ray":
        for flag in ("ray_address", "ray_workers"):
            if getattr(args, flag, None) is not None:
                raise UsageError(f"--{flag.replace('_', '-')} goes with --executor ray")
        return
    from caffezoo.frameworks import import_ray

    import_ray()  # exit 4 with the install hint when Ray is missing
    if args.ray_address not in (None, "auto"):
        from caffezoo.evaluation.ray_executor import reachable

        reachable(args.ray_address)


def check_apart(records, outputs) -> None:
    """A record is read back and appended to; it cannot also be an output written at the
    end."""
    ends = {Path(o).expanduser().resolve() for o in outputs if o}
    for record in records:
        if record and Path(record).expanduser().resolve() in ends:
            raise UsageError(f"{record}: --record and an output file are the same path")


def run(args) -> int:
    from caffezoo.evaluation import dataset, report
    from caffezoo.outputs import OutputSet, check_target

    check_numbers(args)
    check_executor(args)
    if args.resume and not args.record:
        raise UsageError("--resume continues a --record FILE: give the file")
    for note in scale_notes(args):
        print(note, file=sys.stderr)
    source = resolve_model(args)
    pre, resolved = resolve_pipeline(args, source)
    settings = sweep_settings(args, pre, source.card, resolved)
    if resolved.source and resolved.source != f"zoo card {getattr(source.card, 'name', '')}":
        print(f"input contract: {resolved.source} ({'; '.join(pre.contract.describe()[:2])})",
              file=sys.stderr)
    if resolved.overrides:
        print(f"flags override the contract: {'; '.join(resolved.overrides)}", file=sys.stderr)
    many = len(settings) > 1
    from caffezoo.zoo import ILSVRC2012_VAL

    # Every output is checked now (not after hours of evaluation) and all land together.
    json_file = None if args.json is None or json_to_stdout(args) else args.json
    csv_path = results_csv_path(args.results_csv, json_file)
    predictions = [_suffixed(args.predictions, p.crop_size, many) for p in settings] \
        if args.predictions else []
    records = [_suffixed(args.record, p.crop_size, many) for p in settings] \
        if args.record else [None] * len(settings)
    outputs = OutputSet(
        [("--json", json_file),
         ("--results-csv" if args.results_csv else "--results-csv (from --json)", csv_path),
         ("--log", args.log), ("--plot", args.plot),
         *(("--predictions", path) for path in predictions)],
        inputs={"--weights": args.weights, "--prototxt": args.prototxt,
                "--val-list": args.val_list, "--class-map": args.class_map})
    check_apart(records, [json_file, csv_path, args.log, args.plot, *predictions])
    for record in filter(None, records):
        check_target(record)  # up front too (a record is appended to, not renamed onto)
    folder = None
    if args.data_dir:
        folder = dataset.read_image_folder(args.data_dir, args.limit)
        samples_raw = folder.samples
        print(f"{args.data_dir}: {folder.describe()}", file=sys.stderr)
    else:
        samples_raw = dataset.read_val_list(args.val_list, args.data_root, args.limit)
    expected_list = getattr(source.card, "val_list", None)
    if args.data_dir and expected_list and expected_list != ILSVRC2012_VAL:
        print(f"note: {source.card.name} was evaluated with labels in {expected_list}'s class "
              "order, not sorted folder names; give --class-map to map them", file=sys.stderr)
    elif args.val_list and expected_list and Path(args.val_list).name != expected_list:
        print(f"note: {source.card.name} was evaluated with labels in {expected_list}'s class "
              "order; use that list (or --class-map) if yours orders classes differently",
              file=sys.stderr)
    runs = []
    with outputs, tempfile.TemporaryDirectory(prefix="caffezoo-eval-") as tmp:
        # with the JSON on stdout, the summary text goes to stderr
        text_out = sys.stderr if json_to_stdout(args) else sys.stdout
        for p, record in zip(settings, records, strict=True):
            label = f"crop {p.crop_size}" if many else ""
            result, info = evaluate_one(args, source, p, samples_raw, Path(tmp), label, record,
                                        folder, resolved)
            log = report.original_log(result, p, info)
            if not many:
                print(log, end="", flush=True, file=text_out)
            runs.append((p, result, info, log))
            if args.predictions:
                outputs.write(_suffixed(args.predictions, p.crop_size, many),
                              report.predictions_csv(result))
        if many:  # one table for the sweep; --log keeps each size's text in full
            print(report.sweep_table([(p, r, i) for p, r, i, _ in runs]), flush=True,
                  file=text_out)
        dicts = [report.result_dict(r, p, i) for p, r, i, _ in runs]
        if args.json:
            payload = {"sweep": dicts} if many else dicts[0]
            if args.plot:
                payload["plot"] = args.plot
            if json_file:
                outputs.write(json_file, json.dumps(payload, indent=2) + "\n")
            else:
                write_json(args.json, payload)  # stdout
        if csv_path:
            outputs.write(csv_path, report.results_csv([report.timm_row(r, p, i)
                                                        for p, r, i, _ in runs]))
        if args.log:
            outputs.write(args.log, "\n".join(log for *_, log in runs))
        if args.plot:
            from caffezoo.evaluation.plots import plot_accuracy_vs_crop

            title = getattr(source.card, "name", None) or Path(source.weights).stem
            plot_accuracy_vs_crop([(p.crop_size, r) for p, r, _, _ in runs],
                                  outputs.stage(args.plot),
                                  title=f"{title}, {settings[0].crop_num}-crop")
        outputs.commit()
    if args.plot:
        print(f"plot written to {args.plot}", file=sys.stderr)
    failed = sum(len(r.failures) for _, r, _, _ in runs)
    if failed:
        print(f"warning: {failed} image(s) skipped (listed in the log and results)",
              file=sys.stderr)
    return 0
