"""The keypoint family's networks: a captcha (R, G, B and a padding mask, in [0, 1]) in, a
heatmap and sub-cell offsets at 1/4 of the input's resolution out.

litehrnet  Lite-HRNet (Yu et al., CVPR 2021), as the authors' code builds it: a stem (a
           strided 3x3 conv, then a ShuffleNet v2 downsampling unit) to 1/4; then stages,
           stage i of `modules[i]` modules on i + 2 parallel branches (widths
           `channels[: i + 2]`, each half the previous one's resolution), a new branch
           added at each stage by a strided conv from the lowest. A module is `blocks`
           conditional channel weighting blocks, then HRNet's multi-resolution fusion.
           Lite-HRNet-18 (the defaults) is 2/4/2 modules of 2 blocks on 40/80/160/320
           channels: 1,054,320 parameters in our backbone (4 input channels); with the
           pose head the authors count, 1.13 M, the paper's 1.1 M.
unet       the plain reference: conv-BN-ReLU double convs at the input's resolution and
           after each of 4 downsamplings (widths channels[0] x 1, 2, 4, 8, 16), then
           transposed convs with skip connections back up to 1/4.

Both end in the same LiteFPN neck (each branch to `head` channels by a 1x1 conv, summed from
the lowest resolution up, smoothed by a depthwise-separable 3x3 conv) and the same two
heads: the heatmap's logits (channel 0 the gap, 1 the slider piece) and the offsets (dx, dy
of the gap, dx, dy of the slider, in cells). The offsets are linear, as CenterNet's are:
their L1 loss keeps a constant gradient up to the cell's edges, where a sigmoid's fades.

A network is its `architecture`, a JSON mapping (every setting, the stride and the input's
per-channel mean and std, which the network applies itself), and its weights: `build`
makes the network an architecture describes, with fresh weights.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MODEL_TYPES = ("litehrnet", "unet")
STRIDE = 4  # the outputs' cells, in input pixels
MULTIPLE = 32  # the input's height and width: Lite-HRNet's lowest branch is at 1/32
MEAN = (0.485, 0.456, 0.406, 0.5)  # ImageNet's for R, G, B; the mask's is its midpoint
STD = (0.229, 0.224, 0.225, 0.5)
HEATMAP_BIAS = -2.19  # CenterNet's: every cell starts at sigmoid(-2.19) = 0.1
CROSS_RATIO = 8  # Lite-HRNet-18's and -30's reduction in the cross-resolution weighting
SPATIAL_RATIO = 4  # the authors' reduction in the spatial weighting


def architecture(
    model_type: str = "litehrnet",
    *,
    channels: tuple[int, ...] = (40, 80, 160, 320),
    modules: tuple[int, ...] = (2, 4, 2),
    blocks: int = 2,
    stem: int = 32,
    head: int = 64,
    in_channels: int = 4,
    mean: tuple[float, ...] = MEAN,
    std: tuple[float, ...] = STD,
) -> dict[str, Any]:
    """The JSON mapping that describes a network: its type and the settings it uses (the
    unet uses channels[0] alone, as its `width`)."""
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model type {model_type!r}: expected one of {', '.join(MODEL_TYPES)}")
    if len(mean) != in_channels or len(std) != in_channels:
        raise ValueError(f"mean and std need one value per input channel, {in_channels}")
    common = {
        "head": head,
        "in_channels": in_channels,
        "stride": STRIDE,
        "mean": list(mean),
        "std": list(std),
    }
    if model_type == "unet":
        return {"type": "unet", "width": channels[0], **common}
    if len(channels) != len(modules) + 1:
        raise ValueError(
            f"{len(modules)} stages need {len(modules) + 1} branch widths, not {list(channels)}"
        )
    if any(c % 2 for c in (*channels, stem)):
        # every block splits its channels in halves, and shuffles them in two groups
        raise ValueError(f"Lite-HRNet needs even widths: channels {list(channels)}, stem {stem}")
    return {
        "type": "litehrnet",
        "channels": list(channels),
        "modules": list(modules),
        "blocks": blocks,
        "stem": stem,
        **common,
    }


def build(architecture: dict[str, Any]) -> KeypointNet:
    """The network a recorded architecture describes, with fresh weights."""
    a = architecture
    if a["type"] == "litehrnet":
        backbone: LiteHRNet | UNet = LiteHRNet(
            a["in_channels"], a["stem"], tuple(a["channels"]), tuple(a["modules"]), a["blocks"]
        )
    elif a["type"] == "unet":
        backbone = UNet(a["in_channels"], a["width"])
    else:
        raise ValueError(f"model type {a['type']!r}: expected one of {', '.join(MODEL_TYPES)}")
    return KeypointNet(backbone, a["head"], a["mean"], a["std"])


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class KeypointNet(nn.Module):
    """Input normalisation, a backbone (its maps, highest resolution first), the neck and
    the two heads: `forward(x)` is (heatmap logits (N, 2, H/4, W/4), offsets (N, 4, H/4,
    W/4)) for x (N, C, H, W) in [0, 1]."""

    def __init__(
        self, backbone: LiteHRNet | UNet, head: int, mean: list[float], std: list[float]
    ) -> None:
        super().__init__()
        self.stride = STRIDE
        self.backbone = backbone
        self.neck = LiteFPN(backbone.out_channels, head)
        self.heatmap = nn.Sequential(_separable(head, head), nn.Conv2d(head, 2, 1))
        self.offset = nn.Sequential(_separable(head, head), nn.Conv2d(head, 4, 1))
        nn.init.constant_(self.heatmap[-1].bias, HEATMAP_BIAS)
        # not in the state: the architecture records them
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.shape[-2] % MULTIPLE or x.shape[-1] % MULTIPLE:
            raise ValueError(f"input {tuple(x.shape[-2:])}: H and W must be multiples of 32")
        features = self.neck(self.backbone((x - self.mean) / self.std))
        return self.heatmap(features), self.offset(features)


class LiteFPN(nn.Module):
    """Top-down fusion of the backbone's maps to the highest resolution's: each to `head`
    channels by a 1x1 conv, added from the lowest up, then a depthwise-separable 3x3 conv."""

    def __init__(self, channels: list[int], head: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(_conv_bn(c, head, relu=False) for c in channels)
        self.smooth = _separable(head, head)

    def forward(self, xs: list[Tensor]) -> Tensor:
        top = self.lateral[-1](xs[-1])
        for x, lateral in zip(xs[-2::-1], self.lateral[-2::-1], strict=True):
            x = lateral(x)
            top = x + F.interpolate(top, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.smooth(top)


class LiteHRNet(nn.Module):
    """The backbone: the stem, then per stage its transition and its modules; the maps of
    every branch out, 1/4 of the input's resolution first."""

    def __init__(
        self,
        in_channels: int,
        stem: int,
        channels: tuple[int, ...],
        modules: tuple[int, ...],
        blocks: int,
    ) -> None:
        super().__init__()
        self.stem = Stem(in_channels, stem)
        self.transitions = nn.ModuleList()
        self.stages = nn.ModuleList()
        widths = [stem]
        for i, count in enumerate(modules):
            self.transitions.append(Transition(widths, list(channels[: i + 2])))
            widths = list(channels[: i + 2])
            self.stages.append(nn.Sequential(*(HRModule(widths, blocks) for _ in range(count))))
        self.out_channels = widths

    def forward(self, x: Tensor) -> list[Tensor]:
        xs = [self.stem(x)]
        for transition, stage in zip(self.transitions, self.stages, strict=True):
            xs = stage(transition(xs))
        return xs


class Stem(nn.Module):
    """A 3x3 conv with stride 2, then a ShuffleNet v2 downsampling unit (expand ratio 1):
    half the channels through a strided depthwise-separable conv, half through 1x1,
    strided depthwise 3x3 and 1x1 convs, concatenated and shuffled. Out at 1/4."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.conv = _conv_bn(in_channels, channels, kernel=3, stride=2)
        self.branch1 = _separable(half, channels - half, stride=2)
        self.branch2 = nn.Sequential(
            _conv_bn(half, channels),
            _conv_bn(channels, channels, kernel=3, stride=2, groups=channels, relu=False),
            _conv_bn(channels, half),
        )

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = self.conv(x).chunk(2, dim=1)
        return F.channel_shuffle(torch.cat((self.branch1(x1), self.branch2(x2)), dim=1), 2)


class Transition(nn.Module):
    """Into a stage: each branch kept (through a depthwise-separable conv where its width
    changes), and a new branch at half the lowest one's resolution, from the lowest."""

    def __init__(self, widths: list[int], stage: list[int]) -> None:
        super().__init__()
        self.kept = nn.ModuleList(
            nn.Identity() if a == b else _separable(a, b)
            for a, b in zip(widths, stage[:-1], strict=True)
        )
        self.new = _separable(widths[-1], stage[-1], stride=2)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        return [kept(x) for kept, x in zip(self.kept, xs, strict=True)] + [self.new(xs[-1])]


class HRModule(nn.Module):
    """`blocks` conditional channel weighting blocks on every branch, then the fusion."""

    def __init__(self, channels: list[int], blocks: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(ChannelWeighting(channels) for _ in range(blocks)))
        self.fusion = Fusion(channels)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        return self.fusion(self.blocks(xs))


class ChannelWeighting(nn.Module):
    """Lite-HRNet's conditional channel weighting block, in place of the shuffle block's
    1x1 convs: each branch's channels split in halves; one half weighted across the
    resolutions, through a depthwise 3x3 conv, weighted by its own global context; the
    halves concatenated and shuffled. The order is the authors' code's."""

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        halves = [c // 2 for c in channels]
        self.cross = CrossResolutionWeighting(halves)
        self.depthwise = nn.ModuleList(
            _conv_bn(c, c, kernel=3, groups=c, relu=False) for c in halves
        )
        self.spatial = nn.ModuleList(SpatialWeighting(c) for c in halves)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        kept, weighted = zip(*(x.chunk(2, dim=1) for x in xs), strict=True)
        out = []
        parts = zip(kept, self.cross(list(weighted)), self.depthwise, self.spatial, strict=True)
        for x1, x2, depthwise, spatial in parts:
            out.append(F.channel_shuffle(torch.cat((x1, spatial(depthwise(x2))), dim=1), 2))
        return out


class CrossResolutionWeighting(nn.Module):
    """Weights for every channel of every branch from all branches at once: each pooled to
    the lowest resolution, concatenated, 1x1 conv-BN-ReLU, 1x1 conv-BN-sigmoid; each
    branch's weights brought back to its resolution (nearest) and multiplied in."""

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        self.channels = channels
        total = sum(channels)
        reduced = max(1, total // CROSS_RATIO)
        self.weights = nn.Sequential(
            _conv_bn(total, reduced), _conv_bn(reduced, total, relu=False), nn.Sigmoid()
        )

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        size = xs[-1].shape[-2:]
        pooled = [F.adaptive_avg_pool2d(x, size) for x in xs[:-1]] + [xs[-1]]
        weights = self.weights(torch.cat(pooled, dim=1)).split(self.channels, dim=1)
        return [
            x * F.interpolate(w, size=x.shape[-2:], mode="nearest")
            for x, w in zip(xs, weights, strict=True)
        ]


class SpatialWeighting(nn.Module):
    """Squeeze-and-excitation on one branch: global average pool, 1x1 conv-ReLU, 1x1
    conv-sigmoid (with biases, no BN, as the authors'), multiplied in."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        reduced = max(1, channels // SPATIAL_RATIO)
        self.weights = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, reduced, 1),
            nn.ReLU(),
            nn.Conv2d(reduced, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weights(x)


class Fusion(nn.Module):
    """HRNet's multi-resolution fusion: each branch's output is ReLU of the sum of every
    branch brought to its resolution (from lower ones: 1x1 conv-BN, nearest upsampling;
    from higher ones: strided depthwise-separable convs, one per halving). The authors'
    code adds in place, which counts a branch's own map twice and feeds the fused map of
    branch 0 to the others; this sums each branch once, as the paper and HRNet do."""

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        n = len(channels)
        self.paths = nn.ModuleList(
            nn.ModuleList(_path(channels, source, target) for source in range(n))
            for target in range(n)
        )

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        fused = []
        for paths in self.paths:
            terms = [path(x) for path, x in zip(paths, xs, strict=True)]
            fused.append(F.relu(sum(terms[1:], terms[0])))  # from a term: no 0 + tensor copy
        return fused


def _path(channels: list[int], source: int, target: int) -> nn.Module:
    """What brings branch `source`'s map to branch `target`'s resolution and width."""
    if source == target:
        return nn.Identity()
    c_in, c_out = channels[source], channels[target]
    if source > target:
        return nn.Sequential(
            _conv_bn(c_in, c_out, relu=False),
            nn.Upsample(scale_factor=2 ** (source - target), mode="nearest"),
        )
    halvings = [_separable(c_in, c_in, stride=2) for _ in range(target - source - 1)]
    return nn.Sequential(*halvings, _separable(c_in, c_out, stride=2, relu=False))


class UNet(nn.Module):
    """The plain reference backbone: its map at 1/4 of the input's resolution, in a list as
    Lite-HRNet's maps are."""

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        widths = [width * 2**level for level in range(5)]  # 1, 1/2, 1/4, 1/8, 1/16
        self.down = nn.ModuleList([_double(in_channels, widths[0])])
        for c_in, c_out in pairwise(widths):
            self.down.append(nn.Sequential(nn.MaxPool2d(2), _double(c_in, c_out)))
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(widths[level + 1], widths[level], 2, stride=2) for level in (3, 2)
        )
        self.merges = nn.ModuleList(_double(2 * widths[level], widths[level]) for level in (3, 2))
        self.out_channels = [widths[2]]

    def forward(self, x: Tensor) -> list[Tensor]:
        skips = []
        for down in self.down:
            x = down(x)
            skips.append(x)
        for up, merge, skip in zip(self.ups, self.merges, (skips[3], skips[2]), strict=True):
            x = merge(torch.cat((skip, up(x)), dim=1))
        return [x]


def _double(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(_conv_bn(c_in, c_out, kernel=3), _conv_bn(c_out, c_out, kernel=3))


def _separable(c_in: int, c_out: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    """Depthwise 3x3 conv-BN, then 1x1 conv-BN (-ReLU)."""
    return nn.Sequential(
        _conv_bn(c_in, c_in, kernel=3, stride=stride, groups=c_in, relu=False),
        _conv_bn(c_in, c_out, relu=relu),
    )


def _conv_bn(
    c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1, relu: bool = True
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    return nn.Sequential(*layers, *([nn.ReLU()] if relu else []))
