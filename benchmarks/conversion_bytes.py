"""Records the bytes of every conversion the test suite and the benchmarks make, so that a
refactoring can show it changed none of them (issue 20: identical bytes, or each difference
listed and justified).

What it converts, each through the same command line a user types (`caffezoo convert`,
`caffezoo export`), from seeded random sources written here:

- every zoo card x every card source that can write a random checkpoint for it (`torch` per
  layout, `tf-slim`, `mxnet` Gluon exports), into the card and, where the source also maps onto
  it, into the card's original (a refusal is recorded as its message);
- the Lua .t7 trees tests/conversion/test_convert_lua.py converts (ResNeXt-50, WRN-50-2 at 64 px);
- every graph benchmark model (benchmarks/graph_sources.py, benchmarks/mxnet_gluon.py) for every
  --target;
- every converted net exported to ONNX and to PyTorch (`caffezoo export --to onnx|torch`).

It writes a JSON manifest: the commit, then one entry per conversion with the sha256 of each
file written (or the error). Compare two manifests with --compare.

    nice scripts/run python benchmarks/conversion_bytes.py -o docs/conversion_bytes.json
        [--only SUBSTRING] [--work DIR] [--repo CHECKOUT] [--skip-exports]
    scripts/run python benchmarks/conversion_bytes.py --compare OLD.json NEW.json

--repo runs another checkout's caffezoo (e.g. a `git worktree` at an older commit) with this
script, so that before and after are made by the same recipe.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

GRAPH_TARGETS = ("caffe", "fork", "opencv")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cli(argv: list[str]) -> str | None:
    """Runs `caffezoo ARGV` in this process; None on success, else the error it printed."""
    from caffezoo import cli as caffezoo_cli

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = caffezoo_cli.main(argv)
    return None if code == 0 else (err.getvalue().strip() or f"exit {code}")


class Recorder:
    def __init__(self, work: Path, only: str | None, exports: bool):
        self.work, self.only, self.exports = work, only, exports
        self.entries: dict[str, dict] = {}

    def wanted(self, key: str) -> bool:
        return self.only is None or self.only in key

    def convert(self, key: str, argv: list[str]) -> None:
        """`caffezoo convert ARGV -o BASE`, its files hashed, then exported."""
        if not self.wanted(key):
            return
        t0 = time.time()
        base = self.work / key.replace("/", "_").replace(":", "_")
        error = cli(["convert", *argv, "-o", str(base)])
        command = " ".join(["caffezoo", "convert", *argv]).replace(str(self.work), "WORK")
        entry: dict = {"command": command}
        if error is not None:
            entry["error"] = error.replace(str(self.work), "WORK")
        else:
            caffemodel, prototxt = (Path(f"{base}.caffemodel"), Path(f"{base}.prototxt"))
            entry["caffemodel"], entry["prototxt"] = sha256(caffemodel), sha256(prototxt)
            if self.exports:
                for to, suffix in (("onnx", ".onnx"), ("torch", ".pt")):
                    out = Path(f"{base}{suffix}")
                    err = cli(["export", "--to", to, "--prototxt", str(prototxt), "--weights",
                               str(caffemodel), "-o", str(out)])
                    entry[to] = err if err is not None else sha256(out)
                    out.unlink(missing_ok=True)
            caffemodel.unlink()
            prototxt.unlink()
        entry["seconds"] = round(time.time() - t0, 1)
        self.entries[key] = entry
        print(f"{key}: {entry.get('error', entry.get('caffemodel', '')[:12])} "
              f"({entry['seconds']} s)", file=sys.stderr, flush=True)
        gc.collect()


def card_conversions(rec: Recorder, work: Path) -> None:
    from caffezoo import zoo
    from caffezoo.converters.mxnet.cards import GLUON_FOR_CARD
    from caffezoo.converters.pytorch.models import SOURCE_ARCHS
    from caffezoo.converters.tfslim import nets

    def into(card_name: str) -> list[str]:
        card = zoo.get_card(card_name)
        return [card_name] + ([card.variant_of] if card.variant_of else [])

    for card_name, layout in SOURCE_ARCHS:
        key = f"card/torch-{layout}/{card_name}"
        if not any(rec.wanted(f"{key}->{m}") for m in into(card_name)):
            continue
        ckpt = work / f"{card_name}-{layout}.pth"
        ckpt.unlink(missing_ok=True)
        from caffezoo.converters import pytorch

        pytorch.random_checkpoint(card_name, ckpt, layout, seed=0)
        for model in into(card_name):
            rec.convert(f"{key}->{model}", ["--source", f"torch:{ckpt}", "--model", model,
                                            "--layout", layout])
        ckpt.unlink()
    for card_name in nets.BY_CARD:
        key = f"card/tf-slim/{card_name}"
        if not any(rec.wanted(f"{key}->{m}") for m in into(card_name)):
            continue
        from caffezoo.converters import tfslim

        prefix = work / f"{card_name}.ckpt"
        tfslim.random_checkpoint(card_name, prefix, seed=0)
        for model in into(card_name):
            rec.convert(f"{key}->{model}", ["--source", f"tf-slim:{prefix}", "--model", model])
    for card_name in GLUON_FOR_CARD:
        key = f"card/mxnet/{card_name}"
        if not any(rec.wanted(f"{key}->{m}") for m in into(card_name)):
            continue
        from caffezoo.converters import mxnet

        prefix = work / f"{card_name}-gluon"
        mxnet.random_checkpoint(card_name, str(prefix), seed=0)
        for model in into(card_name):
            rec.convert(f"{key}->{model}", ["--source", f"mxnet:{prefix}", "--model", model])


def lua_conversions(rec: Recorder, work: Path) -> None:
    sys.path.insert(0, str(HERE / "tests" / "helpers"))
    import t7writer as t7

    from caffezoo.converters import pytorch

    # as tests/conversion/test_convert_lua.py makes them
    for card_name in ("resnext50_32x4d", "wrn50_2"):
        key = f"card/torch-lua/{card_name}"
        if not rec.wanted(key):
            continue
        model = pytorch.random_model(card_name, "torchvision", seed=5)
        path = work / f"{card_name}.t7"
        t7.save(t7.resnet_tree(model, pool_kernel=2), path)
        rec.convert(key, ["--source", f"torch:{path}", "--model", card_name, "--input-size",
                          "64", "--dialect", "portable"])
        path.unlink()


def graph_conversions(rec: Recorder, work: Path) -> None:
    sys.path.insert(0, str(HERE / "benchmarks"))
    from graph_sources import MODELS
    from mxnet_gluon import SIZES

    from caffezoo.converters.mxnet.gluon import GLUON_MODELS, export_random_gluon

    for spec in MODELS:
        for target in GRAPH_TARGETS:
            rec.convert(f"graph/{spec}/{target}", ["--source", spec, "--input-shape",
                                                   "1,3,224,224", "--target", target])
    for name in GLUON_MODELS:
        keys = [f"graph/mxnet:{name}/{t}" for t in GRAPH_TARGETS]
        if not any(rec.wanted(k) for k in keys):
            continue
        size = SIZES.get(name, 224)
        prefix = export_random_gluon(name, work / name, size, seed=0)
        for key, target in zip(keys, GRAPH_TARGETS, strict=True):
            rec.convert(key, ["--source", f"mxnet:{prefix}", "--input-shape",
                              f"1,3,{size},{size}", "--target", target])


def _scratch_free(entry: dict) -> dict:
    """An entry with its scratch folder's name (in commands and errors) written WORK."""
    return {k: re.sub(r"/tmp/tmp\w+", "WORK", v) if isinstance(v, str) else v
            for k, v in entry.items()}


def compare(old_path: str, new_path: str) -> int:
    old = json.loads(Path(old_path).read_text())
    new = json.loads(Path(new_path).read_text())
    print(f"old: {old['commit']}  new: {new['commit']}")
    same = differ = 0
    for key in sorted(set(old["entries"]) | set(new["entries"])):
        a, b = (_scratch_free(m["entries"][key]) if key in m["entries"] else None
                for m in (old, new))
        if a is None or b is None:
            print(f"{key}: only in {'new' if a is None else 'old'}")
            differ += 1
            continue
        fields = [f for f in sorted(set(a) | set(b)) if f not in ("seconds", "command")]
        diffs = [f for f in fields if a.get(f) != b.get(f)]
        if diffs:
            differ += 1
            for f in diffs:
                print(f"{key}: {f} differs: {a.get(f)!s:.70} -> {b.get(f)!s:.70}")
        else:
            same += 1
    print(f"{same} conversions identical, {differ} differ")
    return 1 if differ else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default=None, help="the manifest to write (JSON)")
    ap.add_argument("--only", default=None, help="only the conversions whose key contains this")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--repo", default=str(HERE), help="the checkout whose caffezoo runs")
    ap.add_argument("--skip-exports", action="store_true")
    ap.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"))
    args = ap.parse_args()
    if args.compare:
        return compare(*args.compare)
    if not args.output:
        ap.error("give -o MANIFEST (or --compare OLD NEW)")
    repo = Path(args.repo).resolve()
    sys.path.insert(0, str(repo))
    import caffezoo

    assert Path(caffezoo.__file__).resolve().is_relative_to(repo), caffezoo.__file__
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "caffezoo"],
                           capture_output=True, text=True, check=True).stdout.strip()
    t0 = time.time()
    # one fixed scratch path: an ONNX export records the prototxt's path in its doc_string, so
    # a random folder name would make every ONNX hash differ from run to run
    tmp = Path(args.work or tempfile.gettempdir()) / "caffezoo-conversion-bytes"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        rec = Recorder(tmp, args.only, not args.skip_exports)
        card_conversions(rec, tmp)
        lua_conversions(rec, tmp)
        graph_conversions(rec, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    manifest = {"commit": commit + (" (caffezoo/ modified)" if dirty else ""),
                "seconds": round(time.time() - t0), "entries": rec.entries}
    Path(args.output).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print(f"{len(rec.entries)} conversions in {manifest['seconds']} s -> {args.output}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
