"""`caffezoo time`: the real `caffe time` (forward and backward per layer, as the original zoo
reported), and forward-only timing of every runtime side by side (passes interleaved; median,
fastest and slowest pass, a warning when they disagree) with achieved GFLOP/s against this
machine's fp32 limit: the best of the installed engines on a reference GEMM.

    caffezoo time --model resnext50_32x4d                      # random weights
    caffezoo time --prototxt deploy.prototxt --weights w.caffemodel -b 1,16 \\
        --threads 1,2 --json speed.json
    caffezoo time --model inception_v3 --no-caffe-time --backends opencv

docs/benchmarks.md explains the method and holds the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from caffezoo.cliargs import add_batch_size, add_input_size, add_json, json_to_stdout, write_json
from caffezoo.errors import CaffezooError, UsageError
from caffezoo.progress import Progress
from caffezoo.table import format_table


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _backends(text: str) -> tuple[str, ...]:
    from caffezoo.runtimes import BACKENDS

    names = tuple(v.strip() for v in text.split(",") if v.strip())
    for n in names:
        if n not in BACKENDS:
            raise argparse.ArgumentTypeError(f"unknown backend {n!r} ({', '.join(BACKENDS)})")
    return names


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="ZOO_NAME", help="a zoo model (prototxt generated)")
    p.add_argument("--prototxt", metavar="P", help="deploy prototxt")
    p.add_argument("--weights", metavar="W",
                   help=".caffemodel (default: seeded random weights; speed does not depend "
                        "on the values)")
    add_input_size(p, help="square input size (default: the zoo model's or the prototxt's)")
    p.add_argument("--backends", type=_backends, default=None, metavar="B1,B2",
                   help="forward-only runtimes to time, side by side (default: every installed "
                        "one of pycaffe, opencv, onnxruntime, openvino, torch)")
    add_batch_size(p, type=_ints, default=(1,), metavar="N1,N2",
                   help="forward-only batch size(s), comma-separated (default 1)",
                   old=("--batch-sizes",))
    p.add_argument("--threads", type=_ints, default=None, metavar="N1,N2",
                   help="thread count(s), comma-separated, at most 4 per CPU (default: all "
                        "cores)")
    p.add_argument("--iterations", type=int, default=5, metavar="N",
                   help="timed passes per setting, taken in turns across the runtimes "
                        "(median, fastest and slowest reported; default 5)")
    p.add_argument("--warmup", type=int, default=1, metavar="N", help="untimed passes first")
    p.add_argument("--caffe-time", action=argparse.BooleanOptionalAction, default=True,
                   help="run the real `caffe time` (forward+backward, batch 1) too")
    p.add_argument("--caffe-iterations", type=int, default=None, metavar="N",
                   help="iterations of `caffe time` (default: --iterations)")
    p.add_argument("--limit", action=argparse.BooleanOptionalAction, default=True,
                   help="measure this machine's fp32 limit (the best installed engine on a "
                        "reference GEMM) to report the fraction reached")
    # the option's name before the limit was the best engine's instead of numpy's sgemm
    p.add_argument("--peak", dest="limit", action=argparse.BooleanOptionalAction,
                   help=argparse.SUPPRESS)
    p.add_argument("--layers", action="store_true", help="print caffe time's per-layer table")
    add_json(p, "everything measured", "; the text then goes to stderr")


def _contract(args) -> tuple[object, str] | None:
    """(the input contract beside --prototxt / --weights, its path), or None for a bare net:
    timing takes its input size from it unless --input-size says otherwise. With --model, the
    contract beside --weights (a conversion at another size than the card's default)."""
    from caffezoo.contract import find_contract

    weights = Path(args.weights).expanduser() if args.weights else None
    if args.prototxt:
        found = find_contract(Path(args.prototxt).expanduser(), weights)
    elif weights is not None:
        found = find_contract(weights)
    else:
        return None
    return None if found is None else (found[0], str(found[1]))


def _own_size(prototxt: str, where: str) -> int | None:
    """The square input size of --prototxt when the contract was found beside the weights, not
    beside it (README: `generate --input-size 320`, timed with the converted weights): the
    net given is timed at its own size. None when the contract is the prototxt's own (then
    both agree: caffezoo.contract.find_contract checks it)."""
    from caffezoo import analysis, netio
    from caffezoo.contract import contract_path

    if not prototxt:  # --model: the card is built at the contract's size
        return None
    path = Path(prototxt).expanduser()
    if Path(where) == contract_path(path):
        return None
    h, w = analysis.nchw_input(netio.read_prototxt(path), path)[2:]
    return h if h == w else None


def _prototxt(args, tmp: Path) -> tuple[Path, str]:
    from caffezoo import netio

    if args.prototxt:
        path = Path(args.prototxt).expanduser()
        if args.input_size:
            net = netio.read_prototxt(path)
            inputs = [la for la in net.layer if la.type == "Input"]
            if len(inputs) != 1 or len(inputs[0].input_param.shape[0].dim) != 4:
                raise CaffezooError(f"{path}: cannot set the input size (needs one NCHW Input)")
            dims = inputs[0].input_param.shape[0].dim
            dims[2] = dims[3] = args.input_size
            path = tmp / "net.prototxt"
            netio.write_prototxt(net, path)
        return path, Path(args.prototxt).stem
    if not args.model:
        raise CaffezooError("give --model ZOO_NAME or --prototxt P")
    from caffezoo.zoo import get_card

    card = get_card(args.model)
    path = tmp / f"{card.name}.prototxt"
    netio.write_prototxt(card.build(args.input_size), path)
    return path, card.name


def run(args) -> int:
    import contextlib

    from caffezoo.outputs import OutputSet

    for flag, low in (("iterations", 1), ("warmup", 0), ("caffe_iterations", 1),
                      ("input_size", 1)):
        value = getattr(args, flag, None)
        if value is not None and value < low:
            raise UsageError(f"--{flag.replace('_', '-')} must be at least {low}, got {value}")
    from caffezoo.limits import check_parallel

    for t in args.threads or ():
        check_parallel("--threads", t)
    to_file = args.json is not None and not json_to_stdout(args)
    outputs = OutputSet([args.json if to_file else None])  # checked before any timing
    # with the JSON on stdout, the human-readable text goes to stderr
    text_out = sys.stderr if json_to_stdout(args) else sys.stdout
    with contextlib.redirect_stdout(text_out):
        status, out = _measure(args)
    if to_file:
        with outputs:
            outputs.write(args.json, json.dumps(out, indent=2) + "\n")
            outputs.commit()
    else:
        write_json(args.json, out)
    return status


def _measure(args) -> tuple[int, dict]:
    import os

    from caffezoo.evaluation import timing
    from caffezoo.runtimes import check_net, installed_backends, open_runtime

    threads_list = args.threads or (os.cpu_count() or 1,)
    out: dict = {"tool": "caffezoo time", "iterations": args.iterations,
                 "load_average": {"start": list(os.getloadavg())}}
    status = 0
    with tempfile.TemporaryDirectory(prefix="caffezoo-time-") as tmpdir:
        tmp = Path(tmpdir)
        found = _contract(args)
        if found is not None:
            contract, where = found
            c = contract.crop_size
            size = args.input_size or _own_size(args.prototxt, where) or c
            said = [f"input_size: {c},{c} -> {size},{size} (given)"] \
                if size != c and args.input_size else []
            own = "" if size == c or said else f"; {args.prototxt} takes {size}x{size}"
            print(f"input contract: {where} (input {c}x{c}{own})", file=sys.stderr)
            if said:
                print(f"flags override the contract: {'; '.join(said)}", file=sys.stderr)
            args.input_size = size
            out["contract"] = {"path": where, "input_size": [size, size], "overrides": said}
        prototxt, name = _prototxt(args, tmp)
        if found is not None and not args.prototxt:
            # the card built at that size must be the contract's net (its class count)
            from caffezoo.contract import check_fits_net

            check_fits_net(found[0], found[1], prototxt, size=False,
                           shown=f"the zoo model {name}")
        checked = check_net(prototxt)
        weights = Path(args.weights).expanduser() if args.weights else None
        if weights is None:
            weights = tmp / "random.caffemodel"
            timing.write_random_caffemodel(checked.net, weights)
        out["model"] = {"name": name, "prototxt": str(args.prototxt or prototxt),
                        "weights": str(args.weights) if args.weights else "random (seed 0)",
                        "input_shape": list(checked.input_shape)}
        print(f"{name}: input {'x'.join(map(str, checked.input_shape[1:]))}")

        limits: dict[int, timing.GemmLimit] = {}
        if args.limit:
            # seconds per thread count, with no output until done: a bar says what runs
            with Progress(len(threads_list), label="fp32 limit", unit="setting") as bar:
                for t in threads_list:
                    bar.note(f"{t} thread(s)")
                    limits[t] = timing.measure_gemm_limit(t)
                    bar.update(1)
            for t in threads_list:
                _print_limit(limits[t])
            out["limit"] = [asdict(p) for p in limits.values()]

        if args.caffe_time:
            iters = args.caffe_iterations or args.iterations
            try:
                with Progress(1, label="caffe time", unit="run") as bar:
                    bar.note(f"{iters} forward-backward iterations, batch 1")
                    rep = timing.run_caffe_time(prototxt, iterations=iters, batch_size=1,
                                                threads=threads_list[-1])
                    bar.update(1)
                out["caffe_time"] = rep.to_dict()
                out["caffe_time"]["threads"] = threads_list[-1]
                _print_caffe_time(rep, args.layers, threads_list[-1])
            except timing.CaffeTimeError as err:
                out["caffe_time"] = {"error": str(err)}
                print(f"caffe time: error: {err}", file=sys.stderr)
                status = 1

        rows = []
        macs = timing.needed_macs(prototxt, weights)
        out["macs_per_image"] = macs
        backends = args.backends or installed_backends()
        settings = len(threads_list) * len(args.batch_size)
        bar = Progress(settings, label="forward timing", unit="setting")
        for t in threads_list:
            # every runtime loaded at once, their passes taken in turns (interleaved)
            runtimes = {b: open_runtime(b, prototxt, weights, threads=t) for b in backends}
            for n in args.batch_size:
                secs = timing.time_interleaved(runtimes, n, args.iterations, args.warmup)
                limit = limits[t].gflops if t in limits else None
                rows += [timing.summarize(b, t, n, secs[b], macs, limit) for b in backends]
                bar.update(1, f"{t} thread(s), batch {n}")
            del runtimes
        bar.close()
        out["load_average"]["end"] = list(os.getloadavg())
        if rows and limits and any(r.limit_fraction > 1 for r in rows):
            _settle_limits(rows, limits, threads_list)
            out["limit"] = [asdict(p) for p in limits.values()]
        if rows:
            _print_forward(rows, macs, out["load_average"])
        out["forward"] = [dict(asdict(r), spread=r.spread) for r in rows]
    return status, out


def _settle_limits(rows, limits: dict, threads_list) -> None:
    """A run beat the limit: the GEMM ran under more load than the run. The limit is measured
    again; where a run still beats it, the limit becomes that run's own rate (the machine
    demonstrably reaches it), said so, so that no measured run is ever above the stated
    limit (docs/benchmarks.md, `caffezoo time`)."""
    import dataclasses

    from caffezoo.evaluation import timing

    for t in threads_list:
        again = timing.measure_gemm_limit(t)
        if again.gflops > limits[t].gflops:
            limits[t] = again
            _print_limit(again, "measured again, after the runs")
    for t in threads_list:
        fastest = max((r for r in rows if r.threads == t), key=lambda r: r.gflops, default=None)
        if fastest is not None and fastest.gflops > limits[t].gflops:
            print(f"warning: {fastest.backend} at {t} thread(s), batch {fastest.batch_size} ran "
                  f"at {fastest.gflops:.1f} GFLOP/s, above the GEMM reference measured twice "
                  f"({limits[t].gflops:.1f}; the machine was busier then): the limit is that "
                  "run's rate", file=sys.stderr)
            limits[t] = dataclasses.replace(
                limits[t], gflops=fastest.gflops, engine=f"{fastest.backend} on this net",
                method=limits[t].method + "; raised to the fastest measured run, which beat it")
            _print_limit(limits[t], "a measured run's rate")
    for r in rows:
        r.limit_fraction = r.gflops / limits[r.threads].gflops


def _print_limit(limit, when: str = "") -> None:
    others = ", ".join(f"{e} {g:.1f}" for e, g in sorted(limit.by_engine.items(),
                                                          key=lambda kv: -kv[1])
                       if e != limit.engine)
    what = (f"{limit.engine} on a {limit.n}^3 GEMM, best of {limit.repeats}"
            if limit.engine in limit.by_engine else
            f"{limit.engine}; on a {limit.n}^3 GEMM")
    print(f"fp32 limit, {limit.threads} thread(s): {limit.gflops:.1f} GFLOP/s ({what}"
          f"{'; ' + others if others else ''}){' [' + when + ']' if when else ''}")


def _print_caffe_time(rep, layers: bool, threads: int) -> None:
    print(f"caffe time (batch {rep.batch_size}, {rep.iterations} iterations, {threads} "
          f"OpenBLAS thread(s)): forward {rep.forward_ms:.2f} ms, backward "
          f"{rep.backward_ms:.2f} ms, forward-backward {rep.forward_backward_ms:.2f} ms")
    if layers:
        print(format_table(("layer", "type", "forward ms", "backward ms"),
                           [(la.name, la.type, f"{la.forward_ms:.3f}", f"{la.backward_ms:.3f}")
                            for la in rep.layers], align="llrr", indent="  "))


def _print_forward(rows, macs: int, load: dict) -> None:
    from caffezoo.evaluation.timing import SPREAD_WARN

    print(f"forward only ({macs / 1e9:.3f} GMACs per image, 2 FLOPs per MAC; median of the "
          "passes, fastest-slowest beside it; 'x pycaffe': speed relative to pycaffe at the "
          "same threads and batch):")
    base = {(r.threads, r.batch_size): r.images_per_s for r in rows if r.backend == "pycaffe"}

    def speedup(r) -> str:
        ref = base.get((r.threads, r.batch_size))
        return f"{r.images_per_s / ref:.2f}" if ref else "-"

    print(format_table(
        ("backend", "threads", "batch", "ms/batch", "fastest-slowest", "img/s", "GFLOP/s",
         "of limit", "x pycaffe"),
        [(r.backend, r.threads, r.batch_size, f"{r.ms_per_batch:.1f}",
          f"{r.ms_min:.1f}-{r.ms_max:.1f}", f"{r.images_per_s:.2f}", f"{r.gflops:.1f}",
          f"{100 * r.limit_fraction:.0f}%" if r.limit_fraction is not None else "-",
          speedup(r)) for r in rows], align="lrrrrrrrr", indent="  "))
    for key in dict.fromkeys((r.threads, r.batch_size) for r in rows):
        group = [r for r in rows if (r.threads, r.batch_size) == key]
        best = min(group, key=lambda r: r.ms_per_batch)
        if len(group) > 1:
            print(f"fastest at {key[0]} thread(s), batch {key[1]}: {best.backend}")
    start, end = load.get("start", [0])[0], load.get("end", [0])[0]
    print(f"load average (1 min): {start:.2f} before, {end:.2f} after")
    wild = [r for r in rows if r.spread > SPREAD_WARN]
    if wild:
        which = ", ".join(f"{r.backend} ({r.threads} thread(s), batch {r.batch_size}) "
                          f"{r.spread:.1f}x" for r in wild)
        print(f"warning: passes disagree by more than {SPREAD_WARN}x (slowest / fastest): "
              f"{which}; the machine's load changed (load average {start:.1f} -> {end:.1f}) "
              "or a backend is unstable: take these figures with care", file=sys.stderr)
