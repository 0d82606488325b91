"""A Caffe net rewritten with one blob per layer output (`out_of_place`): the same layers, weights
and results, but the values that in-place layers (BatchNorm, Scale, ReLU, ...) overwrite stay
readable, for layer-by-layer comparison and for pairing a net with a source graph."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from caffezoo import netio


@dataclass
class OutOfPlace:
    """A net with one blob per layer output, and where each original blob version went."""

    net: Any
    tops: dict[str, list[str]]  # layer -> its new top names
    bottoms: dict[str, list[str]]  # layer -> its new bottom names
    index: dict[str, int]  # layer -> position
    producer: dict[str, str]  # new blob -> layer
    reads: list[tuple[int, str, str, bool]]  # (layer index, original blob, version, in place)
    types: dict[str, str]  # layer -> type
    final: dict[str, str]  # original blob -> the version holding its final value
    versions: dict[tuple[str, str], str]  # (original blob, layer writing it) -> version

    def value_names(self, source_names: Iterable[str] = (), final: bool = False
                    ) -> dict[str, str]:
        """The names a source may give the values of the original net -> the blob holding
        that value here. Every blob of this net by its own name (an in-place blob's first
        value keeps the original name, later ones are named after their layer), and
        `BLOB@LAYER` for the value LAYER wrote into BLOB: how `caffezoo export` names the
        values an in-place layer overwrites, giving BLOB itself to the final value (what
        Caffe's in-place blob holds after the forward pass). So an original name means the
        final value where `source_names` hold such a `BLOB@LAYER` for it, or with `final`
        (a source's outputs are final values)."""
        names = {blob: blob for blob in self.producer}
        given = set(source_names)
        for (blob, layer), version in self.versions.items():
            names[f"{blob}@{layer}"] = version
            if final or f"{blob}@{layer}" in given:
                names[blob] = self.final[blob]
        return names

    def consumed(self, blob: str, after: str) -> str | None:
        """The version of the original blob `blob` seen by the first layer after `after` that
        reads it without rewriting it: a pooling's value after its in-place fix-up, or after
        the Slice that the portable dialect puts behind it."""
        i = self.index[after]
        return next((v for j, b, v, in_place in self.reads
                     if b == blob and j > i and not in_place), None)


def out_of_place(net) -> OutOfPlace:
    out = netio.NetParameter()
    out.CopyFrom(net)
    current: dict[str, str] = {}
    used: set[str] = set()
    tops: dict[str, list[str]] = {}
    bottoms: dict[str, list[str]] = {}
    index: dict[str, int] = {}
    producer: dict[str, str] = {}
    reads: list[tuple[int, str, str, bool]] = []
    versions: dict[tuple[str, str], str] = {}
    for i, layer in enumerate(out.layer):
        index[layer.name] = i
        new_bottoms = [current.get(b, b) for b in layer.bottom]
        for b, nb in zip(layer.bottom, new_bottoms, strict=True):
            reads.append((i, b, nb, b in layer.top))
        del layer.bottom[:]
        layer.bottom.extend(new_bottoms)
        new_tops = []
        for t in layer.top:
            name = t
            if t in used:
                name, k = layer.name, 1
                while name in used:
                    name, k = f"{layer.name}_out{k}", k + 1
            used.add(name)
            current[t] = name
            versions[(t, layer.name)] = name
            producer[name] = layer.name
            new_tops.append(name)
        del layer.top[:]
        layer.top.extend(new_tops)
        tops[layer.name] = new_tops
        bottoms[layer.name] = new_bottoms
    return OutOfPlace(out, tops, bottoms, index, producer, reads,
                      {layer.name: layer.type for layer in out.layer}, dict(current), versions)
