"""The model zoo: one `ModelCard` per model of the original caffe-model zoo (soeaver/caffe-model,
`cls/`), with everything needed to regenerate, evaluate and compare it.

    card = get_card("resnext50_32x4d")
    net = card.build()            # NetParameter at the default input size
    net = card.build(320)         # any other valid size
    card.stats().params           # learned parameters, computed from the generated net

Generators are referenced as "module:function" and imported only when a net is built, so
listing the zoo costs nothing. Reference figures (accuracy, `caffe time`, release sizes) are the
original README's; parameter and MAC counts are computed by `caffezoo.analysis`.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field

from caffezoo.contract import IMAGENET_BGR_MEAN_255, IMAGENET_BGR_STD_255, InputContract
from caffezoo.errors import NetDefinitionError
from caffezoo.proto import caffe_pb2

# The two validation lists the original ships (`path label` per line, labels 0..999).
ILSVRC2012_VAL = "ILSVRC2012_val.txt"  # classes in sorted-wnid order (the usual one)
ILSVRC2015_VAL = "ILSVRC2015_val.txt"  # classes in ILSVRC2015 devkit order (MXNet Inception-v3)

# Preprocessing of the original evaluation_cls.py, per family (BGR, on 0..255 pixels).
RESNET_V2_MEAN = (102.9801, 115.9465, 122.7717)
TORCH_MEAN = IMAGENET_BGR_MEAN_255  # torchvision's ImageNet mean/std, BGR, on 0..255
TORCH_STD = IMAGENET_BGR_STD_255
INCEPTION_MEAN = (128.0, 128.0, 128.0)
INCEPTION_STD = (128.0, 128.0, 128.0)

ORIGINAL_REPO = "soeaver/caffe-model"
ORIGINAL_REVISION = "27d644d"  # the revision of ORIGINAL_REPO the generators reproduce
TIME_DEVICE = "Pascal Titan X, cuDNN 5.1, batch 1 (`caffe time -gpu`)"


@dataclass(frozen=True)
class EvalSetting:
    """One evaluation scale: resize the short side to `base_size`, crop `crop_size`."""

    base_size: int
    crop_size: int


@dataclass(frozen=True)
class Accuracy:
    """A top-1/top-5 figure (percent) on ILSVRC2012 val, as the original README reports it."""

    crop_size: int
    crops: int  # 1 (centre) or 12
    top1: float
    top5: float


@dataclass(frozen=True)
class CaffeTime:
    """Forward/backward milliseconds of `caffe time` in the original README."""

    input_size: int
    forward_ms: float
    backward_ms: float


@dataclass(frozen=True)
class WeightSource:
    """Where weights for this model can be had: framework, how the checkpoint is named there,
    and how it relates to the original release."""

    framework: str
    checkpoint: str
    note: str = ""


@dataclass(frozen=True)
class ModelStats:
    """Counts computed from a generated net."""

    input_size: int
    params: int        # learned parameters (convolution, inner product, Scale)
    blob_params: int   # every value stored in a .caffemodel (adds BatchNorm statistics)
    macs: int          # multiply-accumulates of one image

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9


@dataclass(frozen=True)
class ModelCard:
    name: str
    title: str
    family: str
    generator: str                      # "module:function", called as f(input_size, **args)
    generator_args: Mapping[str, object] = field(default_factory=dict)
    input_size: int = 224               # default (and the original file's) input size
    eval_settings: tuple[EvalSetting, ...] = ()
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)   # BGR
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)    # BGR
    val_list: str = ILSVRC2012_VAL
    num_classes: int = 1000
    sources: tuple[WeightSource, ...] = ()
    accuracy: tuple[Accuracy, ...] = ()
    caffe_time: tuple[CaffeTime, ...] = ()
    release_mb: float | None = None     # size of the released .caffemodel (README)
    published_params_m: float | None = None   # millions, from the literature / torchvision
    published_gmacs: float | None = None
    published_note: str = ""            # where the published figures come from, differences
    original_prototxt: str = ""         # path in the original repository
    oddities: tuple[str, ...] = ()      # quirks of the original kept for weight compatibility
    variant_of: str = ""                # for a variant: the zoo model whose layer names it keeps

    @property
    def module_name(self) -> str:
        return self.generator.partition(":")[0]

    @property
    def available(self) -> bool:
        """Whether the generator module is installed (all ten are, once the zoo is complete)."""
        try:
            return importlib.util.find_spec(self.module_name) is not None
        except ModuleNotFoundError:
            return False

    def build(self, input_size: int | None = None) -> caffe_pb2.NetParameter:
        """The deploy net (modern form) for square inputs of `input_size` (default: the card's).
        """
        module, _, func = self.generator.partition(":")
        try:
            generator = getattr(importlib.import_module(module), func)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
            raise NetDefinitionError(f"{self.name}: generator module {module} is not "
                                     "available") from None
        size = self.input_size if input_size is None else input_size
        return generator(size, **dict(self.generator_args))

    def base_size(self, crop_size: int) -> int:
        """The resize-before-crop size for a centre crop of `crop_size`: the card's own setting
        for that crop (224 -> 256, 320 -> 320), else the ratio of its first setting applied
        (256/224: 112 -> 128), never below the crop; without settings, the crop itself."""
        for setting in self.eval_settings:
            if setting.crop_size == crop_size:
                return setting.base_size
        if not self.eval_settings:
            return crop_size
        first = self.eval_settings[0]
        return max(crop_size, round(crop_size * first.base_size / first.crop_size))

    def contract(self, crop_size: int | None = None) -> InputContract:
        """What the card's net expects, for a centre crop of `crop_size` (default: the card's
        first evaluation crop, else its input size): BGR pixels 0..255, the card's mean/std,
        short side resized (OpenCV, bilinear) to `base_size`, probabilities from `prob`.
        The one place eval, validate, demo and convert take these from."""
        if crop_size is None:
            crop_size = (self.eval_settings[0].crop_size if self.eval_settings
                         else self.input_size)
        labels = "imagenet-1k-devkit" if self.val_list == ILSVRC2015_VAL else "imagenet-1k"
        return InputContract(
            channel_order="BGR", pixel_scale=255.0, mean=tuple(self.mean), std=tuple(self.std),
            input_size=(crop_size, crop_size), resize_size=self.base_size(crop_size),
            interpolation="bilinear", resize="opencv", labels=labels,
            num_classes=self.num_classes, output="probabilities",
            origin=f"zoo card {self.name}")

    def all_oddities(self) -> tuple[str, ...]:
        """The card's oddities plus any the generator module lists in `ODDITIES`."""
        extra: tuple[str, ...] = ()
        if self.available:
            extra = tuple(getattr(importlib.import_module(self.module_name), "ODDITIES", ()))
        return self.oddities + tuple(o for o in extra if o not in self.oddities)

    def stats(self, input_size: int | None = None) -> ModelStats:
        """Parameter and MAC counts of the generated net (computed once per size)."""
        size = self.input_size if input_size is None else input_size
        key = (self.name, size)
        if key not in _STATS:
            _STATS[key] = compute_stats(self.build(size), size)
        return _STATS[key]

    def reference(self, crop_size: int | None = None, crops: int = 1) -> Accuracy | None:
        """The original's accuracy at `crop_size` (default: the input size) with `crops`."""
        size = self.input_size if crop_size is None else crop_size
        return next((a for a in self.accuracy if a.crop_size == size and a.crops == crops),
                    None)


_STATS: dict[tuple[str, int], ModelStats] = {}


def compute_stats(net: caffe_pb2.NetParameter, input_size: int) -> ModelStats:
    """Learned parameters, stored values and MACs of `net`, from caffezoo.analysis."""
    from caffezoo.analysis import analyze  # pure Python, but only needed here

    result = analyze(net)
    return ModelStats(input_size=input_size, params=result.total_params,
                      blob_params=result.total_params + result.total_stats,
                      macs=result.total_macs)


# -- the cards ----------------------------------------------------------------------------

_RESNET_EVAL = (EvalSetting(256, 224), EvalSetting(320, 320))
_INCEPTION_EVAL = (EvalSetting(320, 299), EvalSetting(395, 395))


def _acc(small: int, large: int, *figures: float) -> tuple[Accuracy, ...]:
    """Accuracy rows from the README's order: small 1-crop, small 12-crop, large 1-crop,
    large 12-crop, each top-1 then top-5."""
    t = figures
    return (Accuracy(small, 1, t[0], t[1]), Accuracy(small, 12, t[2], t[3]),
            Accuracy(large, 1, t[4], t[5]), Accuracy(large, 12, t[6], t[7]))


def _time(small: int, large: int, f1: float, b1: float, f2: float,
          b2: float) -> tuple[CaffeTime, ...]:
    return CaffeTime(small, f1, b1), CaffeTime(large, f2, b2)


_RESNET_V2_ODDITIES = (
    "Residual sums are named `res<k>_eletwise` (sic) and the last block's BatchNorm "
    "`res<L>_eletwise_bn`/`_scale`/`_relu`; kept, since Caffe matches weights by layer name.",
    "`pool1` (3x3/2 max, no padding) has no `ceil_mode: false`: the model was trained in Caffe, "
    "so Caffe's ceil rounding is the right one.",
    "The released file declares its input with the legacy net-level `input:`/`input_shape`; the "
    "generator writes an `Input` layer named `data` instead (same blob name and shape).",
    "The released file carries training-only fields (fillers, `lr_mult`, a `bias_filler` on "
    "`match_conv` layers that have `bias_term: false`); they are irrelevant for deploy and "
    "left out.",
)

_TORCH_ODDITIES = (
    "Residual sums are named `<block>_elewise` (sic), their ReLUs `<block>_elewise_relu`; kept, "
    "since Caffe matches weights by layer name.",
    "`pool1` (3x3/2 max, pad 1) has `ceil_mode: false`: the model comes from Torch, which rounds "
    "down; without it every later feature map shifts and top-1 drops by about 1 %.",
    "The released file declares its input with the legacy net-level `input:`/`input_shape`, and "
    "its `classifier` carries training-only `param`/filler fields; the generator writes an "
    "`Input` layer named `data` and leaves the training fields out.",
    "The first block of stage 3 (`resx8_elewise`, `res8_elewise` in WRN) lists its Eltwise "
    "bottoms as (conv3, match_conv) where every other block lists (match_conv, conv3); kept "
    "as released (the sum is the same either way).",
    "The original evaluation settings give the blue mean as 103.52, a typo for "
    "0.406 x 255 = 103.53 (the Torch models' normalisation); the card uses 103.53.",
)


def _resnet_v2(depth: int, blocks: str, acc: tuple[float, ...], times: tuple[float, ...],
               release_mb: float, published: float | None, gmacs: float | None,
               note: str, extra_oddities: tuple[str, ...] = ()) -> ModelCard:
    name = f"resnet{depth}_v2"
    return ModelCard(
        name=name, title=f"ResNet-{depth} v2 (pre-activation, {blocks} blocks)",
        family="resnet-v2", generator="caffezoo.generators.resnet_v2:build",
        generator_args={"variant": name}, input_size=224, eval_settings=_RESNET_EVAL,
        mean=RESNET_V2_MEAN, std=(1.0, 1.0, 1.0), val_list=ILSVRC2012_VAL,
        sources=(WeightSource("caffe", f"{name}.caffemodel (the original zoo's release)",
                              "converted by the original zoo from CUHK craftGBD's model, trained "
                              "in the yjxiong/caffe fork, then fine-tuned on ImageNet"),),
        accuracy=_acc(224, 320, *acc), caffe_time=_time(224, 320, *times),
        release_mb=release_mb, published_params_m=published, published_gmacs=gmacs,
        published_note=note,
        original_prototxt=f"cls/resnet-v2/deploy_resnet{depth}_v2.prototxt",
        oddities=_RESNET_V2_ODDITIES + extra_oddities)


def _torch_resnet(name: str, title: str, family: str, module: str,
                  sources: tuple[WeightSource, ...],
                  acc: tuple[float, ...], times: tuple[float, ...], release_mb: float,
                  published: float, gmacs: float | None, note: str,
                  original: str) -> ModelCard:
    return ModelCard(
        name=name, title=title, family=family, generator=f"caffezoo.generators.{module}:build",
        generator_args={"variant": name}, input_size=224, eval_settings=_RESNET_EVAL,
        mean=TORCH_MEAN, std=TORCH_STD, val_list=ILSVRC2012_VAL, sources=sources,
        accuracy=_acc(224, 320, *acc), caffe_time=_time(224, 320, *times),
        release_mb=release_mb, published_params_m=published, published_gmacs=gmacs,
        published_note=note, original_prototxt=original, oddities=_TORCH_ODDITIES)


def _inception(name: str, title: str, sources: tuple[WeightSource, ...], acc: tuple[float, ...],
               times: tuple[float, ...], release_mb: float, published: float,
               gmacs: float | None, note: str, original: str,
               val_list: str = ILSVRC2012_VAL) -> ModelCard:
    return ModelCard(
        name=name, title=title, family="inception",
        generator=f"caffezoo.generators.{name}:build", input_size=299,
        eval_settings=_INCEPTION_EVAL, mean=INCEPTION_MEAN, std=INCEPTION_STD,
        val_list=val_list, sources=sources, accuracy=_acc(299, 395, *acc),
        caffe_time=_time(299, 395, *times), release_mb=release_mb,
        published_params_m=published, published_gmacs=gmacs, published_note=note,
        original_prototxt=original)


_TV = "torchvision (torchvision.models docs)"

_CARDS: tuple[ModelCard, ...] = (
    _resnet_v2(101, "3-4-23-3", (78.05, 93.88, 80.01, 94.96, 79.63, 94.84, 80.71, 95.43),
               (22.31, 22.75, 26.02, 29.50), 170.3, 44.5, 7.80,
               "ResNet-101 (v1) in " + _TV + ": same convolutions and classifier; the "
               "BatchNorms sit elsewhere, which changes the count by a few thousand"),
    _resnet_v2(152, "3-8-36-3", (79.15, 94.58, 80.76, 95.32, 80.34, 95.26, 81.16, 95.68),
               (32.11, 32.54, 37.46, 41.84), 230.2, 60.2, 11.51,
               "ResNet-152 (v1) in " + _TV + ": same convolutions and classifier; the "
               "BatchNorms sit elsewhere, which changes the count by a few thousand"),
    _resnet_v2(269, "3-30-48-8", (80.29, 95.00, 81.75, 95.80, 81.30, 95.67, 82.13, 96.15),
               (58.20, 59.15, 69.43, 77.26), 390.4, None, None,
               "no published count; the released 390.4 MB caffemodel implies about 102 M "
               "stored values"),
    _inception(
        "inception_v3", "Inception-v3",
        (WeightSource("mxnet", "Inception-7-symbol.json / Inception-7-0001.params",
                      "MXNet model gallery imagenet-1k-inception-v3, the original zoo's source; "
                      "class order of ILSVRC2015_val.txt"),
         WeightSource("torchvision", "inception_v3 / Inception_V3_Weights.IMAGENET1K_V1",
                      "TensorFlow's model ported to PyTorch: different layout and weights")),
        (78.33, 94.25, 80.40, 95.27, 79.90, 95.18, 80.75, 95.76),
        (21.79, 19.82, 22.14, 24.88), 91.1, 23.8, 5.71,
        "Inception-v3 without the auxiliary head, " + _TV,
        "cls/inception/deploy_inception_v3.prototxt", val_list=ILSVRC2015_VAL),
    _inception(
        "inception_v4", "Inception-v4",
        (WeightSource("tf-slim", "inception_v4_2016_09_09.tar.gz (inception_v4.ckpt)",
                      "the original zoo's source; 1001 classes, index 0 = background"),
         WeightSource("timm", "inception_v4.tf_in1k",
                      "the same TF-slim weights ported to PyTorch")),
        (79.97, 94.91, 81.40, 95.70, 81.32, 95.68, 81.88, 96.08),
        (32.96, 32.19, 36.04, 41.91), 163.1, 42.7, 12.3,
        "Szegedy et al. 2017 / TF-slim model table (parameters), timm model card (GMACs)",
        "cls/inception/deploy_inception_v4.prototxt"),
    _inception(
        "inception_resnet_v2", "Inception-ResNet-v2",
        (WeightSource("tf-slim", "inception_resnet_v2_2016_08_30.tar.gz "
                      "(inception_resnet_v2_2016_08_30.ckpt)",
                      "the original zoo's source; 1001 classes, index 0 = background"),
         WeightSource("timm", "inception_resnet_v2.tf_in1k",
                      "the same TF-slim weights ported to PyTorch")),
        (80.14, 95.17, 81.54, 95.92, 81.25, 95.98, 81.85, 96.29),
        (49.06, 54.83, 54.06, 66.38), 213.4, 55.8, 13.2,
        "Szegedy et al. 2017 / TF-slim model table (parameters), timm model card (GMACs)",
        "cls/inception/deploy_inception_resnet_v2.prototxt"),
    _torch_resnet(
        "resnext50_32x4d", "ResNeXt-50 32x4d", "resnext", "resnext",
        (WeightSource("lua-torch", "resnext_50_32x4d.t7",
                      "facebookresearch/ResNeXt release, the original zoo's source"),
         WeightSource("torchvision", "resnext50_32x4d / ResNeXt50_32X4D_Weights.IMAGENET1K_V1",
                      "same architecture, PyTorch's own training")),
        (77.63, 93.69, 79.47, 94.65, 78.90, 94.47, 79.63, 94.97),
        (17.29, 20.08, 19.02, 23.81), 95.8, 25.0, 4.23,
        "resnext50_32x4d in " + _TV + " (25,028,904 parameters): the same architecture",
        "cls/resnext/deploy_resnext50_32x4d.prototxt"),
    _torch_resnet(
        "resnext101_32x4d", "ResNeXt-101 32x4d", "resnext", "resnext",
        (WeightSource("lua-torch", "resnext_101_32x4d.t7",
                      "facebookresearch/ResNeXt release, the original zoo's source"),
         WeightSource("timm", "resnext101_32x4d.gluon_in1k (also .fb_ssl_yfcc100m_ft_in1k, "
                      ".fb_swsl_ig1b_ft_in1k)", "same architecture, other training")),
        (78.70, 94.21, 80.53, 95.11, 80.09, 95.03, 80.81, 95.41),
        (30.73, 35.75, 34.33, 41.02), 169.1, 44.2, None,
        "Xie et al. 2017 / timm's resnext101_32x4d: the same architecture",
        "cls/resnext/deploy_resnext101_32x4d.prototxt"),
    _torch_resnet(
        "resnext101_64x4d", "ResNeXt-101 64x4d", "resnext", "resnext",
        (WeightSource("lua-torch", "resnext_101_64x4d.t7",
                      "facebookresearch/ResNeXt release, the original zoo's source"),
         WeightSource("torchvision", "resnext101_64x4d / ResNeXt101_64X4D_Weights.IMAGENET1K_V1",
                      "same architecture, PyTorch's own training"),
         WeightSource("timm", "resnext101_64x4d.tv_in1k (also .gluon_in1k, .c1_in1k)",
                      "same architecture")),
        (79.40, 94.59, 81.12, 95.41, 80.74, 95.37, 81.52, 95.69),
        (42.07, 64.58, 51.99, 77.71), 319.2, 83.5, 15.46,
        "resnext101_64x4d in " + _TV + " (83,455,272 parameters): the same architecture",
        "cls/resnext/deploy_resnext101_64x4d.prototxt"),
    _torch_resnet(
        "wrn50_2", "Wide ResNet-50-2 (ResNet-50 1x128d)", "wrn", "wrn",
        (WeightSource("pytorch", "wide-resnet-50-2-export-*.pth (szagoruyko/functional-zoo)",
                      "szagoruyko/wide-residual-networks release, the original zoo's source"),
         WeightSource("torchvision", "wide_resnet50_2 / Wide_ResNet50_2_Weights.IMAGENET1K_V1",
                      "same architecture, PyTorch's own training")),
        (77.87, 93.87, 79.91, 94.94, 79.32, 94.72, 80.17, 95.13),
        (16.48, 25.28, 20.99, 35.04), 263.1, 68.9, 11.40,
        "wide_resnet50_2 in " + _TV + " (68,883,240 parameters): the same architecture",
        "cls/wider-resnet/deploy_wrn50-2.prototxt"),
    # Variants for Gluon's ResNetV2 (MXNet model zoo): the original's layer names plus an input
    # BatchNorm and block 1's pre-activation; pool1 padded and rounding down (resnet_v2.py).
    *(ModelCard(
        name=f"resnet{depth}_v2_gluon", title=f"ResNet-{depth} v2 (Gluon layout)",
        family="resnet-v2", generator="caffezoo.generators.resnet_v2:build",
        generator_args={"variant": f"resnet{depth}_v2_gluon"}, input_size=224,
        variant_of=f"resnet{depth}_v2", eval_settings=_RESNET_EVAL, mean=TORCH_MEAN,
        std=TORCH_STD, val_list=ILSVRC2012_VAL,
        sources=(WeightSource("mxnet", f"resnet{depth}_v2 (mxnet.gluon.model_zoo.vision), exported",
                              "Gluon's ImageNet mean/std on RGB input"),),
        published_params_m=params, published_note="the source model's count")
      for depth, params in ((101, 44.5), (152, 60.2))),
    # Variants for PyTorch sources that compute differently from the originals (same layer
    # names; generators/variants_torch.py, docs/conversion.md).
    *(ModelCard(
        name=name, title=title, family="inception",
        generator=f"caffezoo.generators.variants_torch:{name}", input_size=299,
        variant_of=name.rsplit("_", 1)[0],
        eval_settings=_INCEPTION_EVAL, mean=(127.5,) * 3, std=(127.5,) * 3,
        val_list=ILSVRC2012_VAL, sources=(WeightSource(framework, checkpoint, note),),
        published_params_m=params, published_note="the source model's count")
      for name, title, framework, checkpoint, note, params in (
          ("inception_v3_tv", "Inception-v3 (torchvision layout)", "torchvision",
           "inception_v3 / Inception_V3_Weights.IMAGENET1K_V1",
           "transform_input=True: the first convolution sees (x - 127.5) / 127.5", 23.8),
          ("inception_v4_timm", "Inception-v4 (timm layout)", "timm", "inception_v4.tf_in1k",
           "averages exclude the padding", 42.7),
          ("inception_resnet_v2_timm", "Inception-ResNet-v2 (timm layout)", "timm",
           "inception_resnet_v2.tf_in1k", "averages exclude the padding", 55.8))),
    # Variants for TF-slim checkpoints (generators/variants_tfslim.py, docs/conversion.md):
    # TF's input x / 127.5 - 1 is mean 127.5, std 127.5 on 0..255 pixels.
    *(ModelCard(
        name=name, title=title, family=family,
        generator=f"caffezoo.generators.variants_tfslim:{name}", input_size=size,
        variant_of=name.removesuffix("_tfslim"),
        eval_settings=_INCEPTION_EVAL if size == 299 else _RESNET_EVAL,
        mean=(127.5,) * 3, std=(127.5,) * 3, val_list=ILSVRC2012_VAL,
        sources=(WeightSource("tf-slim", checkpoint, "1001 classes (0 = background; dropped by "
                              "default)"),),
        published_params_m=params, published_note="the source model's count")
      for name, title, family, size, checkpoint, params in (
          ("inception_v3_tfslim", "Inception-v3 (TF-slim)", "inception", 299,
           "inception_v3_2016_08_28.tar.gz (inception_v3.ckpt)", 23.8),
          ("inception_v4_tfslim", "Inception-v4 (TF-slim)", "inception", 299,
           "inception_v4_2016_09_09.tar.gz (inception_v4.ckpt)", 42.7),
          ("inception_resnet_v2_tfslim", "Inception-ResNet-v2 (TF-slim)", "inception", 299,
           "inception_resnet_v2_2016_08_30.tar.gz (inception_resnet_v2_2016_08_30.ckpt)",
           55.8),
          ("resnet101_v2_tfslim", "ResNet-101 v2 (TF-slim)", "resnet-v2", 224,
           "resnet_v2_101_2017_04_14.tar.gz (resnet_v2_101.ckpt)", 44.5),
          ("resnet152_v2_tfslim", "ResNet-152 v2 (TF-slim)", "resnet-v2", 224,
           "resnet_v2_152_2017_04_14.tar.gz (resnet_v2_152.ckpt)", 60.2))),
)

_BY_NAME = {card.name: card for card in _CARDS}


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def all_cards(variants: bool = False) -> list[ModelCard]:
    """The original zoo's ten models, in its README's order; with `variants`, followed by the
    variants that keep an original's layer names for another source (e.g. `inception_v3_tv`).
    """
    return [card for card in _CARDS if variants or not card.variant_of]


def get_card(name: str) -> ModelCard:
    """The card called `name` (case and `-`/`_` do not matter: "resnet101-v2" works)."""
    card = _BY_NAME.get(_normalise(name))
    if card is None:
        raise NetDefinitionError(f"unknown model '{name}' (valid: {', '.join(_BY_NAME)})")
    return card


def output_filename(card: ModelCard, input_size: int | None = None,
                    dialect: str = "ceil_mode") -> str:
    """`<name>.prototxt` at the default size and dialect; other sizes and dialects are added:
    `resnext50_32x4d_320_portable.prototxt`."""
    parts = [card.name]
    if input_size is not None and input_size != card.input_size:
        parts.append(str(input_size))
    if dialect != "ceil_mode":
        parts.append(dialect)
    return "_".join(parts) + ".prototxt"
