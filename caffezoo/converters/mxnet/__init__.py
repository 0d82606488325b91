"""The MXNet source: `PREFIX-symbol.json` + `PREFIX-NNNN.params` of any era -> the canonical
source graph (caffezoo.graph.ir), without MXNet; real MXNet 1.9.1 only to validate.

    graph = read_graph("model/resnet50_v2", (1, 3, 224, 224))      # or "model/resnet50_v2,3"
    runner = open_graph_runner("model/resnet50_v2", (1, 3, 224, 224))
    outputs = runner.run(x, record={"resnetv20_conv0_fwd_output"})

Modules: `params` (the NDArray-list reader), `symbol` (the JSON reader), `frontend` (ops ->
canonical nodes), `runner` (MXNet itself). The spec is `PREFIX[,EPOCH]`: the symbol is
`PREFIX-symbol.json`, the weights `PREFIX-EPOCH.params` with EPOCH written as four digits
(default: the highest epoch present). PREFIX may also name the JSON file itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from caffezoo.contract import IMAGENET, InputContract
from caffezoo.errors import InputFileError

KIND = "mxnet"
RANDOM_SUFFIX = ""  # a PREFIX, not a file
SPEC_HELP = "mxnet:PREFIX[,EPOCH] (PREFIX-symbol.json + PREFIX-NNNN.params)"
DEFAULT_INPUT_SHAPE = (1, 3, 224, 224)
# the Gluon model zoo's convention (the files do not record one; see open_graph_runner)
GLUON_IMAGENET = IMAGENET
RAW_RGB = InputContract(channel_order="RGB", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


@dataclass(frozen=True)
class MxnetFiles:
    prefix: str
    symbol: Path
    params: Path
    epoch: int


def resolve(spec: str) -> MxnetFiles:
    """`PREFIX[,EPOCH]` -> the two files; InputFileError naming what is missing."""
    prefix, sep, epoch_text = spec.partition(",")
    prefix = prefix.strip()
    if prefix.endswith("-symbol.json"):
        prefix = prefix[: -len("-symbol.json")]
    if not prefix:
        raise InputFileError(f"mxnet source {spec!r}: expected PREFIX[,EPOCH]")
    symbol = Path(f"{prefix}-symbol.json")
    if not symbol.is_file():
        raise InputFileError(f"{symbol}: no such file (mxnet source {spec!r})")
    if sep:
        try:
            epoch = int(epoch_text)
        except ValueError:
            raise InputFileError(f"mxnet source {spec!r}: epoch {epoch_text!r} is not a "
                                 "number") from None
        params = Path(f"{prefix}-{epoch:04d}.params")
        if not params.is_file():
            raise InputFileError(f"{params}: no such file (mxnet source {spec!r})")
        return MxnetFiles(prefix, symbol, params, epoch)
    base = Path(prefix)
    pattern = re.compile(re.escape(base.name) + r"-(\d+)\.params$")
    found = []
    folder = base.parent if str(base.parent) else Path(".")
    if folder.is_dir():
        for p in folder.iterdir():
            m = pattern.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
    if not found:
        raise InputFileError(f"{prefix}-NNNN.params: no parameter file beside {symbol}")
    epoch, params = max(found)
    return MxnetFiles(prefix, symbol, params, epoch)


def read_graph(spec: str, input_shape: tuple[int, ...] | None = None):
    """The canonical graph (caffezoo.graph.ir.Graph) of an MXNet checkpoint; no MXNet needed.
    The files do not record an input shape: None means DEFAULT_INPUT_SHAPE."""
    from caffezoo.converters.mxnet.frontend import build_graph
    from caffezoo.converters.mxnet.params import read_params
    from caffezoo.converters.mxnet.symbol import read_symbol

    input_shape = tuple(input_shape or DEFAULT_INPUT_SHAPE)
    ck = resolve(spec)
    sym = read_symbol(ck.symbol)
    pf = read_params(ck.params)
    result = build_graph(sym, pf.by_name(), tuple(input_shape), str(ck.params),
                         name=Path(ck.prefix).name)
    graph = result.graph
    era = {"attrs": "current", "attr": "0.9-1.x", "param": "0.8"}[sym.era]
    graph.notes.insert(0, f"read {ck.symbol} ({era} format) and {ck.params} (epoch {ck.epoch}, "
                       f"{len(pf.arrays)} arrays, {'/'.join(sorted(pf.dtypes)) or 'no data'})")
    if result.unused_params:
        shown = ", ".join(result.unused_params[:6])
        more = f" and {len(result.unused_params) - 6} more" if len(result.unused_params) > 6 \
            else ""
        graph.notes.append(f"{len(result.unused_params)} tensor(s) in {ck.params} not used by "
                           f"the graph: {shown}{more}")
    graph.contract = _contract(graph, result.input_name)
    return graph


def _contract(graph, data: str) -> InputContract:
    """The Gluon model zoo's convention (the files record none): RGB, MXNet's OpenCV resize of
    the short side to 256 for a 224 crop; raw 0..255 pixels when the net scales its own input
    (scalar ops at the input), else ImageNet mean/std on 0..1 pixels."""
    from caffezoo.converters.mxnet.frontend import input_scaling

    scales = input_scaling(graph, data) is not None
    base = replace(RAW_RGB if scales else GLUON_IMAGENET, input_size=(224, 224),
                   resize_size=256, resize="opencv", interpolation="bilinear",
                   origin="the MXNet Gluon model-zoo convention (MXNet files state none)"
                   + (": the net scales raw pixels itself" if scales else ""))
    size = graph.inputs[data][-1]
    return base if size == 224 else base.at_crop(size)


def open_graph_runner(spec: str, input_shape: tuple[int, ...] | None = None):
    """Real MXNet running the same checkpoint, with `.input_shape`, `.input_norm` and
    `.run(x, record=None) -> {value name: array}` (runner.MXNetRunner).

    MXNet files do not record how images were normalised. `input_norm` (used to feed images to
    validation; both sides always get the identical tensor) is raw RGB pixels when the net
    scales its own input (scalar ops at the input), else the Gluon model zoo's ImageNet
    convention (RGB, mean 0.485/0.456/0.406, std 0.229/0.224/0.225 of 0..1 pixels)."""
    from caffezoo.converters.mxnet.frontend import build_graph, input_scaling
    from caffezoo.converters.mxnet.params import read_params
    from caffezoo.converters.mxnet.runner import open_runner
    from caffezoo.converters.mxnet.symbol import read_symbol

    input_shape = tuple(input_shape or DEFAULT_INPUT_SHAPE)
    ck = resolve(spec)
    # the graph's input and output names, as the converter sees them
    result = build_graph(read_symbol(ck.symbol), read_params(ck.params).by_name(),
                         tuple(input_shape), str(ck.params))
    runner = open_runner(str(ck.symbol), str(ck.params), result.input_name, tuple(input_shape),
                         result.graph.outputs)
    if input_scaling(result.graph, result.input_name) is not None:
        runner.input_norm = RAW_RGB
    else:
        runner.input_norm = GLUON_IMAGENET
    return runner



# -- the card face (--model): caffezoo/converters/mxnet/cards.py ---------------------------------


def has_random(card_name: str) -> bool:
    from caffezoo.converters.mxnet.cards import GLUON_FOR_CARD

    return card_name in GLUON_FOR_CARD


def random_checkpoint(card_name: str, path: str, layout: str | None = None, seed: int = 0
                      ) -> str:
    from caffezoo.converters.mxnet.cards import random_checkpoint as write

    return write(card_name, path, layout, seed)


def random_checkpoint_files(spec: str) -> list[Path]:
    from caffezoo.converters.mxnet.cards import random_prefix

    prefix = random_prefix(spec)
    return [Path(f"{prefix}-symbol.json"), Path(f"{prefix}-0000.params")]


def convert(spec: str, card, input_size: int | None = None, layout: str | None = None,
            options=None):
    """The zoo net of `card` carrying the checkpoint's weights (converters/mxnet/cards.py)."""
    from caffezoo.converters.mxnet.cards import convert as into_card

    return into_card(spec, card, input_size, layout, options)


def open_source(spec: str, card, net, layout: str | None = None):
    from caffezoo.converters.mxnet.cards import open_source as opener

    return opener(spec, card, net, layout)
