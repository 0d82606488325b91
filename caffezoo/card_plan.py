"""A card conversion's plan: which source module fills (or is checked against) which layers of
the zoo net (`Assign`, `Plan`, what each `Op` does). Converters make plans and apply them
(converters/common.py); validation reads them to compare a source's modules with their layers
one by one.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class Op:
    """What a plan assignment converts or checks (one handler each)."""

    CONV = "conv"  # weight (+ bias) -> Convolution
    BN = "bn"  # mean, var, gamma, beta, eps -> BatchNorm + Scale
    LINEAR = "linear"  # weight (+ bias) -> InnerProduct
    POOL = "pool"  # checks the Pooling (and fills an exclude-pad Scale)
    ELTWISE = "eltwise"  # checks a residual sum's coefficients
    WEIGHTED = (CONV, BN, LINEAR)  # the ops that carry tensors


@dataclass(frozen=True)
class PoolSpec:
    """A source pooling: what the target's Pooling layer must do to match it exactly."""

    method: str  # "max" | "ave"
    kernel: int = 0  # 0 with global_pool
    stride: int = 1
    pad: int = 0
    exclude_pad: bool = False  # average over real pixels only (count_include_pad=False)
    global_pool: bool = False
    ceil: bool = False  # the source rounds up (Torch ceil_mode); PyTorch/Torch default floor
    # TensorFlow's "SAME"/"VALID" instead of pad/ceil: the windows follow from the map size
    # (SAME puts an odd extra pixel at the bottom/right), checked window by window
    padding: str = ""


@dataclass(frozen=True)
class ConvSpec:
    """A source convolution's padding, checked against the target's windows: TF's "SAME" or
    "VALID", or "EXPLICIT" `pad` pixels on each side (TF-slim's conv2d_same)."""

    padding: str
    pad: int = 0


@dataclass(frozen=True)
class Assign:
    """One source module -> Caffe layer(s), converted or checked by the handler `op`."""

    op: str  # one of Op
    source: str  # module path in the source; "" when it has no module
    layers: tuple[str, ...]  # conv/linear/pool/eltwise: (layer,); bn: (BatchNorm, Scale)
    eps: float | None = None  # bn: the source's eps
    conv: ConvSpec | None = None  # conv: checked geometry (TF padding)
    skip_rows: int = 0  # linear: leading source outputs not converted (TF's background class)
    pool: PoolSpec | None = None  # pool
    coeff: tuple[float, ...] | None = None  # eltwise: the source's sum coefficients


@dataclass
class Plan:
    """A layout's mapping of a checkpoint onto one target net."""

    layout: str
    assigns: list[Assign]
    # source prefix -> why its tensors are deliberately not converted (e.g. an auxiliary head)
    ignored: dict[str, str] = field(default_factory=dict)
    hint: str = ""  # what to do when the target's structure does not match (e.g. a variant)

    def by_layer(self) -> dict[str, Assign]:
        return {layer: a for a in self.assigns for layer in a.layers}
