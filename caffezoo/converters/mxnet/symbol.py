"""MXNet `PREFIX-symbol.json` files of every era, read with json only.

- 1.x (and late 0.x): a node's op parameters are in `attrs`; inputs and heads are
  [node, output, version] triples; top-level `attrs.mxnet_version`.
- 0.9 to early 1.x: the parameters are in `attr`.
- 0.8: parameters in `param` (user annotations such as ctx_group in `attr`), inputs and heads
  are [node, output] pairs, nodes carry `backward_source_id`, and the auxiliary states of an op
  (BatchNorm's moving mean and variance) are not nodes at all: MXNet named them
  `<node>_moving_mean` / `<node>_moving_var` when it created them, and so do we (the front end
  fills in the inputs an op lists but the file leaves out).

Every value is kept as the string the file holds ("(3,3)", "False", "1e-05"); `parse_*`
turn them into Python values the way MXNet's parameter parser reads them.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from caffezoo.errors import InputFileError


@dataclass
class SymNode:
    index: int
    op: str  # "null" for a variable (data, weights)
    name: str
    attrs: dict[str, str]  # op parameters (and, for variables, annotations)
    inputs: list[tuple[int, int]]  # (node index, output index)


@dataclass
class Symbol:
    path: str
    nodes: list[SymNode]
    heads: list[tuple[int, int]]
    era: str  # "attrs" (current), "attr" (0.9-1.x), "param" (0.8)
    version: int | None = None  # mxnet_version when the file states it (10901 = 1.9.1)
    notes: list[str] = field(default_factory=list)


def _str_attrs(raw, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"{where} is a {type(raw).__name__}, expected an object")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}


def _entry(raw, where: str, count: int) -> tuple[int, int]:
    if not isinstance(raw, list) or len(raw) not in (2, 3) or not all(
            isinstance(v, int) for v in raw):
        raise ValueError(f"{where}: expected [node, output] or [node, output, version], "
                         f"got {json.dumps(raw)[:60]}")
    node, out = raw[0], raw[1]
    if not 0 <= node < count or out < 0:
        raise ValueError(f"{where}: refers to node {node} of {count}")
    return node, out


def parse_symbol(text: str, path: str = "<string>") -> Symbol:
    from caffezoo.limits import check_graph_nodes

    # each node has an "op" key: the count bounds the nodes before json builds them all
    check_graph_nodes(path, text.count('"op"'))
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputFileError(f"{path}: not JSON ({err.msg} at line {err.lineno} column "
                             f"{err.colno})") from None
    except RecursionError:  # json's decoder recurses once per nesting level
        raise InputFileError(f"{path}: not an MXNet symbol file (JSON nested too deeply)"
                             ) from None
    try:
        return _parse(doc, path)
    except ValueError as err:
        raise InputFileError(f"{path}: not an MXNet symbol file ({err})") from None


def _parse(doc, path: str) -> Symbol:
    if not isinstance(doc, dict) or not isinstance(doc.get("nodes"), list):
        raise ValueError("no 'nodes' list")
    raw_nodes = doc["nodes"]
    count = len(raw_nodes)
    version = None
    top = doc.get("attrs")
    if isinstance(top, dict) and isinstance(top.get("mxnet_version"), list):
        try:
            version = int(top["mxnet_version"][-1])
        except (TypeError, ValueError):
            version = None
    eras = set()
    nodes = []
    for i, raw in enumerate(raw_nodes):
        where = f"node {i}"
        if not isinstance(raw, dict) or not isinstance(raw.get("op"), str) or not isinstance(
                raw.get("name"), str):
            raise ValueError(f"{where}: expected an object with 'op' and 'name'")
        attrs: dict[str, str] = {}
        if "param" in raw:  # 0.8: op parameters in `param`, annotations in `attr`
            eras.add("param")
            attrs.update(_str_attrs(raw.get("attr"), f"{where} attr"))
            attrs.update(_str_attrs(raw.get("param"), f"{where} param"))
        elif "attrs" in raw:
            eras.add("attrs")
            attrs.update(_str_attrs(raw.get("attrs"), f"{where} attrs"))
        elif "attr" in raw:
            eras.add("attr")
            attrs.update(_str_attrs(raw.get("attr"), f"{where} attr"))
        inputs_raw = raw.get("inputs", [])
        if not isinstance(inputs_raw, list):
            raise ValueError(f"{where}: 'inputs' is not a list")
        inputs = [_entry(e, f"{where} ({raw['name']}) input {k}", count)
                  for k, e in enumerate(inputs_raw)]
        if any(src >= i for src, _ in inputs):
            raise ValueError(f"{where} ({raw['name']}): an input comes from a later node")
        nodes.append(SymNode(i, raw["op"], raw["name"], attrs, inputs))
    heads_raw = doc.get("heads")
    if not isinstance(heads_raw, list) or not heads_raw:
        raise ValueError("no 'heads' (outputs)")
    heads = [_entry(h, f"head {k}", count) for k, h in enumerate(heads_raw)]
    era = "param" if "param" in eras else "attr" if "attr" in eras else "attrs"
    return Symbol(path, nodes, heads, era, version)


def read_symbol(path: str | Path) -> Symbol:
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputFileError(f"{path}: cannot read ({err})") from None
    return parse_symbol(text, str(path))


# ---------------------------------------------------------------------------------------------
# attribute values, as MXNet's parameter parser reads them


class AttrError(ValueError):
    pass


_TUPLE = re.compile(r"^\s*[\(\[]\s*(.*?)\s*,?\s*[\)\]]\s*$")


def parse_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("true", "1"):
        return True
    if t in ("false", "0"):
        return False
    raise AttrError(f"{text!r} is not a boolean")


def parse_float(text: str) -> float:
    t = text.strip()
    low = t.lower()
    if low in ("inf", "+inf", "infinity"):
        return math.inf
    if low in ("-inf", "-infinity"):
        return -math.inf
    try:
        return float(t)
    except ValueError:
        raise AttrError(f"{text!r} is not a number") from None


def parse_int(text: str) -> int:
    t = text.strip()
    try:
        return int(t)
    except ValueError:
        try:
            f = float(t)
        except ValueError:
            raise AttrError(f"{text!r} is not an integer") from None
        if not math.isfinite(f) or f != int(f):
            raise AttrError(f"{text!r} is not an integer") from None
        return int(f)


def parse_tuple(text: str) -> tuple[int | None, ...]:
    """"(3, 3)", "[3,3]", "(3,)", "()", "3" (one element); "None" elements stay None."""
    t = text.strip()
    m = _TUPLE.match(t)
    body = m.group(1) if m else t
    if not body:
        return ()
    out: list[int | None] = []
    for part in body.split(","):
        part = part.strip()
        if part in ("None", ""):
            if part == "":
                raise AttrError(f"{text!r} is not a tuple of integers")
            out.append(None)
        else:
            out.append(parse_int(part))
    return tuple(out)


def is_none(text: str | None) -> bool:
    return text is None or text.strip() in ("None", "")
