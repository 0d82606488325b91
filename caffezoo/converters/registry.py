"""The source kinds `convert`, `validate` and `demo` accept, and the one parser of
`--source KIND:SPEC`.

A source kind is a plug-in module, imported only when used, with up to two faces:

- a *card* source (`card=True`) converts into a zoo card or one of its variants (`--model`).
  Its module has a reader (file -> `common.Checkpoint`: the file's tensors and the `ParamNaming`
  that finds canonical parameters among them), plans (how the source's modules map onto the
  card's layers, checked by the handlers in converters.common) and a runner (runs the source
  for validate, recording named modules for `--layers`). Module-level functions:

      convert(spec, card, input_size, layout, options) -> common.Conversion
      open_source(spec, card, net, layout) -> CardRunner       # background kinds: also
                                                                # keep_background=True
      random_checkpoint(card_name, path, layout, seed) -> str   # seeded, NOT trained; says what
      random_checkpoint_files(path) -> list[Path]               # the files it would write
      has_random(card_name) -> bool                             # random_checkpoint can fill it
      RANDOM_SUFFIX: str                                        # file suffix of such a file

- a *graph* source (`graph=True`) converts without a card: its front end translates the file
  into the canonical graph (caffezoo.graph.ir) that one emitter turns into Caffe. Module-level:

      read_graph(spec: str, input_shape: tuple[int, ...] | None) -> caffezoo.graph.ir.Graph
      open_graph_runner(spec: str, input_shape) -> GraphRunner

(CardRunner and GraphRunner: caffezoo/source_runner.py, what the validation engine runs.)

Adding a kind is one `SourceKind` entry below and its module; nothing else names frameworks.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from caffezoo.errors import InputFileError

if TYPE_CHECKING:
    from caffezoo.source_runner import CardRunner


@dataclass(frozen=True)
class SourceKind:
    name: str  # what precedes ":" in --source
    module: str  # the plug-in module
    spec: str  # what follows ":", for help and messages
    example: str
    description: str
    card: bool = True  # converts into zoo cards through plans (--model)
    graph: bool = False  # converts without a card (read_graph / open_graph_runner)
    layouts: tuple[str, ...] = ()  # naming schemes a card source recognises (--layout)
    background: bool = False  # its classifiers may carry a background class (--keep-background)
    # what a graph source states of its input is a record in its file (an ONNX file's metadata
    # written by `caffezoo export`), not a library's convention: a flag that contradicts it
    # is refused (contract.source_input)
    records_contract: bool = False

    def plugin(self) -> ModuleType:
        return importlib.import_module(self.module)


SOURCE_KINDS: dict[str, SourceKind] = {kind.name: kind for kind in (
    SourceKind("torch", "caffezoo.converters.pytorch", "FILE.pth|FILE.t7",
               "torch:resnext50_32x4d.pth",
               "a PyTorch state_dict (torchvision/timm names) or a Lua Torch .t7 model",
               layouts=("torchvision", "timm", "lua")),
    SourceKind("tf-slim", "caffezoo.converters.tfslim", "CKPT",
               "tf-slim:inception_v4.ckpt",
               "a TF-slim checkpoint: its prefix (model.ckpt-NNNN) or a folder with a "
               "'checkpoint' file", background=True),
    SourceKind("mxnet", "caffezoo.converters.mxnet", "PREFIX[,EPOCH]", "mxnet:model/resnet50_v2",
               "an MXNet checkpoint of any era: PREFIX-symbol.json + PREFIX-NNNN.params",
               card=True, graph=True),
    SourceKind("onnx", "caffezoo.converters.onnx", "FILE.onnx", "onnx:model.onnx",
               "any ONNX classifier graph, opset 9 and later (from PyTorch, TensorFlow, ...)",
               card=False, graph=True, records_contract=True),
    SourceKind("torchvision", "caffezoo.converters.traced.torchvision", "NAME[=CKPT]",
               "torchvision:mobilenet_v2",
               "a torchvision classifier by name, traced (random weights without CKPT)",
               card=False, graph=True),
    SourceKind("timm", "caffezoo.converters.traced.timm", "NAME[=CKPT]",
               "timm:tf_efficientnet_lite0",
               "a timm classifier by name, traced (random weights without CKPT)",
               card=False, graph=True),
)}


@dataclass(frozen=True)
class Source:
    """A parsed --source: its kind and what follows the colon."""

    kind: SourceKind
    spec: str

    def __str__(self) -> str:
        return f"{self.kind.name}:{self.spec}"

    def contract_record(self) -> str | None:
        """How to name the record in the file that states the source's input
        (contract.source_input); None for a kind whose statement is a library's convention."""
        from caffezoo.contract import ONNX_METADATA_KEY

        return f"{self.spec} (metadata {ONNX_METADATA_KEY})" if self.kind.records_contract \
            else None


def known() -> str:
    return ", ".join(f"{k.name}:{k.spec}" for k in SOURCE_KINDS.values())


def parse_source(text: str) -> Source:
    """`KIND:SPEC` -> Source; the one place --source is parsed."""
    name, sep, spec = text.partition(":")
    if not sep or not spec or not name:
        raise InputFileError(f"source {text!r}: expected FRAMEWORK:PATH, e.g. "
                             f"{next(iter(SOURCE_KINDS.values())).example} (kinds: {known()})")
    kind = SOURCE_KINDS.get(name)
    if kind is None:
        raise InputFileError(f"source {text!r}: unknown source kind {name!r} (known: {known()})")
    return Source(kind, spec)


def all_layouts() -> tuple[str, ...]:
    return tuple(sorted({lay for k in SOURCE_KINDS.values() for lay in k.layouts}))


def random_kind(card_name: str) -> SourceKind | None:
    """The first card source kind that can write a seeded random checkpoint for the card."""
    for kind in SOURCE_KINDS.values():
        if kind.card and kind.plugin().has_random(card_name):
            return kind
    return None


def open_card_source(source: Source | str, card: Any, net: Any, layout: str | None = None,
                     keep_background: bool = False) -> CardRunner:
    source = parse_source(source) if isinstance(source, str) else source
    if not source.kind.card:
        raise InputFileError(f"source {source}: a {source.kind.name} source converts without a "
                             f"zoo card; it has no --model to validate against")
    if not keep_background:
        return source.kind.plugin().open_source(source.spec, card, net, layout)
    check_background(source)
    return source.kind.plugin().open_source(source.spec, card, net, layout,
                                            keep_background=True)


def check_background(source: Source) -> None:
    if not source.kind.background:
        raise InputFileError(f"--keep-background: a {source.kind.name} source has no "
                             "background class")
