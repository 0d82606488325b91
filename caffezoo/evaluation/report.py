"""Writing evaluation results: JSON, the original's log text, per-image CSV, and a results CSV
with timm's columns (one row per evaluated crop size)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import platform
from dataclasses import dataclass

from caffezoo.evaluation.classify import EvalResult, Prediction
from caffezoo.evaluation.executors import SessionStats
from caffezoo.evaluation.preprocess import Pipeline


@dataclass
class RunInfo:
    """What was evaluated and how, beside the numbers."""

    model: str  # what the log calls "the model": the weights file (as the original)
    prototxt: str
    weights: str
    zoo_name: str | None
    val_list: str
    data_root: str
    backend: str
    threads: int | None
    batch_size: int
    workers: int
    worker_kind: str  # thread | process (as resolved)
    output_blob: str
    softmax: bool
    label_offset: int
    class_map: str | None
    on_error: str
    limit: int | None
    started: dt.datetime
    ended: dt.datetime
    data_dir: str | None = None      # an ImageFolder tree instead of val_list + data_root
    param_count: int | None = None   # learned parameters of the net (caffezoo.analysis)
    name: str = ""                   # the model's name in the results CSV
    session: SessionStats | None = None  # this run's executor and workers
    unit_size: int | None = None     # images per work unit (executors.py)
    record: str | None = None        # the per-image record, when kept
    resumed: int = 0                 # images found in the record when this run started
    sessions: int = 1                # runs that wrote the record, this one included
    contract_source: str = ""        # the contract file, "zoo card X", or "" (a bare net)
    contract_overrides: tuple[str, ...] = ()  # "field: old -> new (given)" per flag that changed it

    @property
    def executor(self) -> str:
        return self.session.executor if self.session else "local"


def _fmt_value(v: float) -> str:
    return str(float(v))


def original_log(result: EvalResult, pre: Pipeline, info: RunInfo) -> str:
    """The summary in the original evaluation_cls.py's words (its log file and last print),
    followed by lines it did not have (std, skipped images, speed)."""
    bgr_mean, bgr_std = pre.contract.bgr_normalization_255()
    mean = ", ".join(_fmt_value(m) for m in bgr_mean)
    text = (f"Evaluation process ends at: {info.ended}. \n"
            f"Time cost is: {info.ended - info.started}. "
            f"\nThe model is: {info.model}. \nThe val file is: {info.val_list}. \n"
            f"{result.evaluated} images has been tested, crop_num is: {pre.crop_num}, "
            f"base_size is: {pre.base_size}, crop_size is: {pre.crop_size}."
            f"\nThe mean value is: ({mean}).")
    for k in result.top_k:
        text += (f"\nAccuracy of top_{k} is: {result.accuracy(k)}; "
                 f"correct num is {result.correct[k]}.")
    std = ", ".join(_fmt_value(s) for s in bgr_std)
    text += f"\nThe std value is: ({std})."
    if info.contract_source:
        text += f"\nThe input contract is: {info.contract_source}."
    c = pre.contract
    if (c.channel_order, c.resize, c.interpolation) != ("BGR", "opencv", "bilinear"):
        text += (f"\nInput: {c.channel_order} channels, {c.resize} resize ({c.interpolation}); "
                 "mean and std above are B,G,R on 0-255 pixels.")
    for line in info.contract_overrides:
        text += f"\nGiven by flags over the contract: {line}."
    if pre.crop_num == 144:
        text += f"\nThe 144-crop scales are: {', '.join(map(str, pre.multi_scales))}."
    if info.softmax:
        text += f"\nScores of '{info.output_blob}' were softmaxed before averaging."
    text += (f"\nBackend: {info.backend}, threads {info.threads or 'default'}, batch size "
             f"{info.batch_size}, workers {info.workers} ({info.worker_kind}): "
             f"{result.images_per_s:.2f} images/s.")
    text += executor_lines(info)
    if result.failures:
        text += (f"\n{len(result.failures)} of {result.listed} images could not be used and were "
                 "skipped:")
        for f in result.failures:
            text += f"\n  {f.reason}"
    return text + "\n"


def executor_lines(info: RunInfo) -> str:
    """Lines about Ray workers and earlier sessions of a resumed run (none for a plain run)."""
    text = ""
    session = info.session
    if session is not None and session.executor == "ray" and session.workers:
        rates = ", ".join(f"{w.name} {w.rate:.2f} img/s" + (f" on {w.where}" if w.where else "")
                          + (f" ({w.restarts} restarts)" if w.restarts else "")
                          for w in session.workers)
        n = len(session.workers)
        text += (f"\nExecutor: Ray ({session.address}), {n} worker{'s' if n > 1 else ''} of "
                 f"{info.threads} thread(s), {info.unit_size} images per unit: {rates}.")
    if info.resumed:
        text += (f"\nResumed from {info.record}: {info.resumed} images were recorded by "
                 f"{info.sessions - 1} earlier run(s); images/s counts every run's time.")
    return text


def sweep_table(runs: list[tuple[Pipeline, EvalResult, RunInfo]]) -> str:
    """A crop-size sweep summed up in one table (each size's full text goes to --log)."""
    from caffezoo.table import format_table

    first = runs[0][1]
    header = ["crop", "base", "crops", *[f"top-{k} %" for k in first.top_k], "images",
              "img/s", "backend"]
    rows = []
    for pre, result, info in runs:
        rows.append([pre.crop_size, pre.base_size, pre.crop_num,
                     *[f"{100 * result.accuracy(k):.2f}" for k in result.top_k],
                     f"{result.evaluated}/{result.listed}", f"{result.images_per_s:.2f}",
                     info.backend])
    info = runs[0][2]
    title = f"{info.name}: {info.val_list}, {runs[0][0].crop_num}-crop"
    align = "r" * (len(header) - 1)
    return f"{title}\n{format_table(header, rows, align=align)}\n"


def original_image_line(index: int, total: int, item: Prediction, result: EvalResult) -> str:
    """The original's per-image line, as its Python 2 print statements spaced it."""
    line = f"Testing image: {index}/{total}  {item.top[0]}/{item.sample.label} "
    parts = []
    for k in result.top_k:
        acc = result.correct[k] / result.evaluated
        parts.append(f"\ttop_{k}:{acc}" if k == 1 else f"top_{k}:{acc}")
    return line + " ".join(parts)


def running_note(result: EvalResult) -> str:
    if not result.evaluated:
        return ""
    accs = " ".join(f"top-{k} {100 * result.accuracy(k):.1f}%" for k in result.top_k[:2])
    skipped = f" skipped {len(result.failures)}" if result.failures else ""
    return accs + skipped


def result_dict(result: EvalResult, pre: Pipeline, info: RunInfo) -> dict:
    bgr_mean, bgr_std = pre.contract.bgr_normalization_255()
    return {
        "tool": "caffezoo eval",
        "model": {"zoo_name": info.zoo_name, "prototxt": info.prototxt,
                  "weights": info.weights},
        "val_list": info.val_list,
        "data_root": info.data_root,
        "data_dir": info.data_dir,
        "settings": {
            "mean": list(bgr_mean), "std": list(bgr_std), "base_size": pre.base_size,
            "crop_size": pre.crop_size, "crop_num": pre.crop_num,
            "scales": list(pre.multi_scales) if pre.crop_num == 144 else None,
            "backend": info.backend, "threads": info.threads, "batch_size": info.batch_size,
            "workers": info.workers, "worker_kind": info.worker_kind,
            "output_blob": info.output_blob,
            "softmax": info.softmax,
            "top_k": list(result.top_k), "label_offset": info.label_offset,
            "class_map": info.class_map, "on_error": info.on_error, "limit": info.limit,
            "executor": info.executor, "unit_size": info.unit_size,
        },
        # the input contract evaluated with (caffezoo/contract.py; docs/contract.md), where it
        # came from, and what flags changed in it
        "contract": pre.contract.to_dict(),
        "contract_source": info.contract_source or None,
        "contract_overrides": list(info.contract_overrides),
        "executor": _executor_dict(info),
        "record": ({"path": info.record, "sessions": info.sessions,
                    "resumed_images": info.resumed} if info.record else None),
        "images": {"listed": result.listed, "evaluated": result.evaluated,
                   "failed": len(result.failures)},
        "accuracy": {f"top{k}": result.accuracy(k) for k in result.top_k},
        "correct": {f"top{k}": result.correct[k] for k in result.top_k},
        "failures": [{"path": f.sample.path, "line": f.sample.line, "reason": f.reason}
                     for f in result.failures],
        "time": {
            "started": info.started.isoformat(timespec="seconds"),
            "ended": info.ended.isoformat(timespec="seconds"),
            "wall_s": round(result.wall_s, 3),
            "images_per_s": round(result.images_per_s, 3),
            "forward_s": round(result.forward_s, 3),
            "forward_calls": result.forward_calls,
            "crops": result.crops,
        },
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or None,
                    "python": platform.python_version()},
    }


def _executor_dict(info: RunInfo) -> dict:
    session = info.session
    if session is None or session.executor != "ray":
        return {"kind": info.executor}
    return {"kind": "ray", "address": session.address,
            "workers": [{"name": w.name, "images": w.images, "busy_s": round(w.busy_s, 3),
                         "images_per_s": round(w.rate, 3), "restarts": w.restarts,
                         "node": w.where} for w in session.workers]}


def predictions_csv(result: EvalResult) -> str:
    """One row per listed image in list order: its prediction, or the reason it failed."""
    kmax = max(result.top_k)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["line", "path", "label", *[f"pred{i + 1}" for i in range(kmax)],
                     *[f"score{i + 1}" for i in range(kmax)],
                     *[f"top{k}" for k in result.top_k], "error"])
    rows: list[tuple[int, list]] = []
    for p in result.predictions:
        rows.append((p.sample.line, [p.sample.line, p.sample.name, p.sample.label, *p.top,
                                     *[f"{s:.6g}" for s in p.scores],
                                     *[int(p.correct(k)) for k in result.top_k], ""]))
    for f in result.failures:
        rows.append((f.sample.line, [f.sample.line, f.sample.name, f.sample.label,
                                     *[""] * (2 * kmax + len(result.top_k)), f.reason]))
    for _, row in sorted(rows, key=lambda r: r[0]):
        writer.writerow(row)
    return buf.getvalue()


# timm's validate.py results columns, in its order; accuracies in percent, param_count in
# millions, img_size the crop fed to the net, crop_pct = crop / resize-before-crop size.
TIMM_COLUMNS = ("model", "top1", "top1_err", "top5", "top5_err", "param_count", "img_size",
                "crop_pct", "interpolation")
# ours after timm's, so that a 1-crop and a 12-crop row (or two backends) never look alike, and
# the input contract evaluated with: resize semantics, channel order, mean and std (on 0..255
# pixels, in that channel order, space-separated) and where the contract came from
RESULTS_COLUMNS = (*TIMM_COLUMNS, "crop_num", "backend", "resize", "channel_order", "mean",
                   "std", "contract")


def timm_row(result: EvalResult, pre: Pipeline, info: RunInfo) -> dict:
    """One results row: timm's columns, then crop_num and backend; a top-k that was not
    computed is left empty."""
    row: dict[str, object] = {"model": info.name or info.zoo_name or info.model}
    for k in (1, 5):
        if k in result.top_k:
            pct = 100.0 * result.accuracy(k)
            row[f"top{k}"], row[f"top{k}_err"] = round(pct, 4), round(100.0 - pct, 4)
        else:
            row[f"top{k}"] = row[f"top{k}_err"] = ""
    row["param_count"] = (round(info.param_count / 1e6, 2) if info.param_count is not None
                          else "")
    row["img_size"] = pre.crop_size
    row["crop_pct"] = round(pre.crop_size / pre.base_size, 4)
    c = pre.contract
    row["interpolation"] = c.interpolation
    row["crop_num"] = pre.crop_num
    row["backend"] = info.backend
    mean, std = c.normalization_255()
    row["resize"], row["channel_order"] = c.resize, c.channel_order
    row["mean"] = " ".join(f"{v:g}" for v in mean)
    row["std"] = " ".join(f"{v:g}" for v in std)
    row["contract"] = info.contract_source or "none (the original's defaults)"
    return row


def results_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=RESULTS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
