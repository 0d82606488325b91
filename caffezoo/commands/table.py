"""`caffezoo table`: the zoo's accuracy table from one command.

    caffezoo table resnext50_32x4d:rx50.caffemodel wrn50_2:wrn.caffemodel \\
        deploy.prototxt:net.caffemodel --val-list ILSVRC2012_val.txt \\
        --data-root ~/ILSVRC2012 -o zoo-table/ [--executor ray] [--resume]

Every model (a zoo card with its weights, or a prototxt and caffemodel with the input contract
beside them) is evaluated at every crop scheme (sizes x crop numbers); each such cell is one
`caffezoo eval` run with its own record in OUT/records/, so an interrupted table resumes cell by
cell and image by image. The table lands in OUT/table.md, table.csv, table.json and table.png
together. docs/evaluation.md#the-zoo-table describes it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from caffezoo.cliargs import add_output
from caffezoo.commands.eval import (
    ModelSource,
    Resolved,
    _ints,
    add_batch_options,
    add_data_options,
    add_executor_options,
    add_runtime_options,
    check_executor,
    check_numbers,
    evaluate_one,
)
from caffezoo.errors import CaffezooError, InputFileError, UsageError

FILES = ("table.md", "table.csv", "table.json", "table.png")
SIZE_RULES = ("all", "first")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="ZOO_NAME:WEIGHTS.caffemodel (a zoo card), or "
                        "PROTOTXT:WEIGHTS.caffemodel with its input contract beside it "
                        "(X.contract.json)")
    add_output(p, metavar="DIR", required=True,
               help="folder for table.md, table.csv, table.json, table.png and each cell's "
                    "record (records/)")
    s = p.add_argument_group("crop schemes")
    s.add_argument("--crops", type=_ints, default=(1, 12), metavar="N1,N2",
                   help="crop schemes per size: 1, 10, 12 or 144 (default 1,12, as the "
                        "original README)")
    s.add_argument("--sizes", default="all", metavar="all|first|C1,C2",
                   help="all (default): each zoo card's evaluation sizes (224 and 320, 299 and "
                        "395), a contract's own size; first: only the first; or crop sizes "
                        "for every model")
    add_data_options(p)
    m = p.add_argument_group("runtime")
    add_runtime_options(m)
    add_batch_options(m)
    p.add_argument("--resume", action="store_true",
                   help="continue the records in DIR/records of an interrupted table")
    add_executor_options(p)


# -- the models and the columns -----------------------------------------------------------


@dataclass
class TableModel:
    name: str
    source: ModelSource
    contract: object | None      # caffezoo.contract.InputContract of a prototxt pair
    origin: str                  # "zoo card X" or the contract file
    input_size: int
    sizes: tuple[int, ...]       # the crop sizes of its columns, by size index


def parse_model(spec: str) -> TableModel:
    """`ZOO_NAME:WEIGHTS` or `PROTOTXT:WEIGHTS` (split at the first colon)."""
    from caffezoo import zoo
    from caffezoo.contract import contract_path, find_contract
    from caffezoo.errors import NetDefinitionError

    left, colon, right = spec.partition(":")
    if not colon or not left or not right:
        raise UsageError(f"model {spec!r}: expected ZOO_NAME:WEIGHTS or PROTOTXT:WEIGHTS")
    weights = Path(os.path.expanduser(right))
    if not weights.is_file():
        raise InputFileError(f"{weights}: weights not found (model {spec!r})")
    if left.endswith(".prototxt"):
        prototxt = Path(os.path.expanduser(left))
        if not prototxt.is_file():
            raise InputFileError(f"{prototxt}: prototxt not found (model {spec!r})")
        found = find_contract(prototxt, weights)
        if found is None:
            raise InputFileError(
                f"{prototxt}: no input contract beside the net ({contract_path(prototxt)} or "
                f"{contract_path(weights)}): the table needs the net's preprocessing "
                "(docs/evaluation.md#the-zoo-table)")
        contract, path = found
        sizes = (contract.crop_size,)
        return TableModel(weights.stem, ModelSource(None, prototxt, weights), contract,
                          str(path), contract.crop_size, sizes)
    try:
        card = zoo.get_card(left)
    except NetDefinitionError:
        raise UsageError(f"model {spec!r}: {left!r} is neither a zoo model (caffezoo zoo lists "
                         "them) nor a .prototxt") from None
    sizes = tuple(s.crop_size for s in card.eval_settings) or (card.input_size,)
    return TableModel(card.name, ModelSource(card, None, weights), None,
                      f"zoo card {card.name}", card.input_size, sizes)


def columns_for(models: list[TableModel], sizes: str, crops: tuple[int, ...]):
    """[(Column, {model name: crop size})] in the README's order: by size, then crops."""
    from caffezoo.evaluation.zoo_table import Column

    if sizes in SIZE_RULES:
        count = max(len(m.sizes) for m in models) if sizes == "all" else 1
        keys = [(i, {m.name: m.sizes[i] for m in models if i < len(m.sizes)})
                for i in range(count)]
    else:
        keys = [(c, {m.name: c for m in models}) for c in _ints(sizes)]
    out = []
    for key, crop_of in keys:
        label = "/".join(str(c) for c in sorted(set(crop_of.values())))
        for n in crops:
            out.append((Column((key, n), f"{label} {n}-crop"), crop_of))
    return out


def pipeline_for(model: TableModel, crop: int, crop_num: int):
    """The Pipeline of one cell: the card's contract at that crop (its rule for the resize),
    or the contract beside the net (at another crop: its crop_pct kept). CaffezooError for a
    crop scheme the contract's pipeline does not define (12 or 144 crops with `resize: pil`)."""
    from caffezoo.evaluation.preprocess import Pipeline

    if model.contract is None:
        return Pipeline(model.source.card.contract(crop), crop_num)
    c = model.contract
    return Pipeline(c if crop == c.crop_size else c.at_crop(crop), crop_num)


def _file_name(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text)


# -- the run ------------------------------------------------------------------------------


def run(args) -> int:
    from caffezoo import analysis, netio
    from caffezoo.evaluation import dataset
    from caffezoo.evaluation import zoo_table as zt
    from caffezoo.outputs import OutputSet

    check_numbers(args)
    check_executor(args)
    if args.sizes not in SIZE_RULES:
        try:
            _ints(args.sizes)
        except argparse.ArgumentTypeError as err:
            raise UsageError(f"--sizes: {err}") from None
    models = [parse_model(spec) for spec in args.models]
    names = [m.name for m in models]
    for i, m in enumerate(models):  # two weights called alike: numbered (records need names)
        if names.count(m.name) > 1:
            m.name = f"{m.name}-{names[:i + 1].count(m.name)}"
    columns = columns_for(models, args.sizes, tuple(args.crops))
    for n in args.crops:
        if n not in (1, 10, 12, 144):
            raise UsageError(f"--crops: {n} is not one of 1, 10, 12, 144")

    out = Path(os.path.expanduser(args.output))
    outputs = OutputSet([out / name for name in FILES], create_dirs=True)
    records = out / "records"
    records.mkdir(exist_ok=True)
    cells, pipelines = [], {}
    for column, crop_of in columns:
        for m in models:
            if m.name not in crop_of:
                continue
            try:
                pipelines[(m.name, column.label)] = pipeline_for(m, crop_of[m.name],
                                                                 column.key[1])
            except CaffezooError as err:  # e.g. 12-crop of a net evaluated the pil way
                print(f"{m.name}, {column.label}: skipped: {err}", file=sys.stderr)
                continue
            cells.append((m, column, crop_of[m.name]))
    paths = {(m.name, column.label): records / _file_name(
        f"{m.name}_{crop}_{column.key[1]}crop.rec") for m, column, crop in cells}
    existing = [p for p in paths.values() if p.exists() and p.stat().st_size]
    if existing and not args.resume:
        raise UsageError(f"{records} holds the records of an earlier table "
                         f"({len(existing)} cells); add --resume to continue it, or remove them")
    folder = None
    if args.data_dir:
        folder = dataset.read_image_folder(args.data_dir, args.limit)
        samples_raw = folder.samples
    else:
        samples_raw = dataset.read_val_list(args.val_list, args.data_root, args.limit)
    args.top_k, args.verbose = (1, 5), False

    rows = {m.name: None for m in models}
    ours = False
    quiet = contextlib.ExitStack()
    if args.executor == "ray":  # one Ray for every cell, not one per cell
        from caffezoo.evaluation.ray_executor import RayOptions, connect, ray_lines_off

        quiet.enter_context(ray_lines_off(args.debug))
        ours = connect(RayOptions(args.ray_address, args.ray_workers, args.debug))
    try:
        with outputs, tempfile.TemporaryDirectory(prefix="caffezoo-table-") as tmp:
            folders = {m.name: Path(tmp) / _file_name(m.name) for m in models}
            for m in models:
                folders[m.name].mkdir()
                path = m.source.prototxt_at(m.input_size, folders[m.name])
                stats = analysis.analyze(netio.read_prototxt(path))
                rows[m.name] = zt.Row(m.name, m.input_size, stats.total_params,
                                      stats.total_macs, m.origin)
            for number, (m, column, crop) in enumerate(cells, start=1):
                crop_num = column.key[1]
                pre = pipelines[(m.name, column.label)]
                label = f"{number}/{len(cells)} {m.name} {crop} {crop_num}-crop"
                record = str(paths[(m.name, column.label)])
                resolved = Resolved(pre.contract, m.origin, [])
                result, info = evaluate_one(args, m.source, pre, samples_raw,
                                            folders[m.name], label, record, folder, resolved)
                macs = (rows[m.name].macs if crop == m.input_size else
                        analysis.analyze(netio.read_prototxt(
                            m.source.prototxt_at(crop, folders[m.name]))).total_macs)
                ref = m.source.card.reference(crop, crop_num) if m.source.card else None
                cell = zt.Cell(column.label, crop, pre.base_size, crop_num,
                               100 * result.accuracy(1), 100 * result.accuracy(5),
                               result.evaluated, result.listed, len(result.failures),
                               result.images_per_s, macs * crop_num / 1e9, info.backend,
                               info.executor, record,
                               ref.top1 if ref else None, ref.top5 if ref else None)
                rows[m.name].cells.append(cell)
                print(f"{label}: top-1 {cell.top1:.2f}% top-5 {cell.top5:.2f}% "
                      f"({cell.evaluated} images, {cell.images_per_s:.1f} img/s)",
                      file=sys.stderr, flush=True)
            table_rows = list(rows.values())
            table_columns = [column for column, _ in columns]
            data_name = args.val_list or args.data_dir
            backends = sorted({c.backend for r in table_rows for c in r.cells})
            note = (f"Top-1/top-5 error in % on {len(samples_raw)} images of {data_name} (in "
                    "brackets: the original README's, where the zoo card has it); GMACs of one "
                    f"image at the input size; img/s on {', '.join(backends)} "
                    f"({args.executor} executor). Made by `caffezoo table`.")
            meta = {"val_list": data_name, "images": len(samples_raw),
                    "backends": backends, "executor": args.executor}
            text = zt.markdown(table_rows, table_columns, note)
            outputs.write(out / "table.md", text)
            outputs.write(out / "table.csv", zt.csv_text(table_rows))
            outputs.write(out / "table.json",
                          json.dumps(zt.json_payload(table_rows, table_columns, meta),
                                     indent=2) + "\n")
            zt.plot(table_rows, table_columns, outputs.stage(out / "table.png"),
                    f"top-1 against cost, {len(samples_raw)} images")
            outputs.commit()
    finally:
        if ours:
            from caffezoo.evaluation.ray_executor import disconnect

            disconnect(args.debug)
        quiet.close()
    print(text, end="")
    print(f"wrote {', '.join(str(out / name) for name in FILES)}", file=sys.stderr)
    return 0
