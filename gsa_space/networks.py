"""GSA-ResNets and their conv-ResNet baselines, built from a `NetConfig`.

Paper: Shen et al., "Global Self-Attention Networks for Image Recognition", arXiv 2010.03019.
A bottleneck block is 1x1 conv-BN-ReLU, spatial op, BN-ReLU, 1x1 conv-BN, plus the shortcut.
The conv op strides in its 3x3; a GSA op runs at full resolution and average-pools 2x2 after.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from gsa_space.attention import GlobalSelfAttention
from gsa_space.config import NetConfig, StageConfig
from gsa_space.space import validate
from gsa_space.variants import build_config

Size = tuple[int, int]


def _down(size: Size, stride: int) -> Size:
    """Map size after a stride: every strided op here pads so that it is ceil(size / stride)."""
    return (-(-size[0] // stride), -(-size[1] // stride))


def stem_output_size(cfg: NetConfig) -> Size:
    """(H, W) after the stem: /4 for ImageNet style (7x7/2 conv + max pool), unchanged otherwise."""
    return _down(_down(cfg.input_size, 2), 2) if cfg.style == "imagenet" else cfg.input_size


def stage_sizes(cfg: NetConfig) -> list[tuple[Size, Size]]:
    """(input (H, W), output (H, W)) of every stage."""
    sizes, size = [], stem_output_size(cfg)
    for stage in cfg.stages:
        out = _down(size, stage.stride)
        sizes.append((size, out))
        size = out
    return sizes


def spatial_op(stage: StageConfig, width: int, stride: int, size: Size) -> nn.Module:
    """The op between the two 1x1 convs: a strided 3x3 conv, or GSA (+ 2x2 avg pool if strided)."""
    if stage.op == "conv3x3":
        return nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
    gsa = GlobalSelfAttention(
        width, width, heads=stage.heads, dim_key=stage.dim_key, extent=stage.extent,
        content=stage.content, positional=stage.positional, query_norm=stage.query_norm,
        axial_order=stage.axial_order, out_proj=stage.out_proj, max_size=size,
    )
    if stride == 1:
        return gsa
    # ceil_mode keeps odd maps in step with the strided 1x1 shortcut: ceil(H / 2).
    return nn.Sequential(gsa, nn.AvgPool2d(2, stride=2, ceil_mode=True))


class Bottleneck(nn.Module):
    """Bottleneck block with a configurable spatial op; maps in_chs -> width * expansion."""

    def __init__(self, in_chs: int, stage: StageConfig, *, stride: int, expansion: int, size: Size) -> None:
        super().__init__()
        width, out_chs = stage.width, stage.width * expansion
        self.conv1 = nn.Conv2d(in_chs, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.spatial = spatial_op(stage, width, stride, size)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_chs, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chs)
        self.act = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_chs != out_chs:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=False), nn.BatchNorm2d(out_chs),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.act(self.bn1(self.conv1(x)))                    # (B, width, H, W)
        out = self.act(self.bn2(self.spatial(out)))                # (B, width, H', W')
        out = self.bn3(self.conv3(out))                            # (B, out_chs, H', W')
        return self.act(out + self.shortcut(x))                    # (B, out_chs, H', W')


def make_stem(cfg: NetConfig) -> nn.Sequential:
    """7x7/2 conv + 3x3/2 max pool (ImageNet style) or a 3x3/1 conv (CIFAR and tiny)."""
    if cfg.style == "imagenet":
        return nn.Sequential(
            nn.Conv2d(cfg.in_chans, cfg.stem_width, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(cfg.stem_width), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
    return nn.Sequential(
        nn.Conv2d(cfg.in_chans, cfg.stem_width, 3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(cfg.stem_width), nn.ReLU(inplace=True),
    )


class ResNet(nn.Module):
    """A ResNet of bottleneck blocks; `cfg` says per stage whether the spatial op is GSA or conv."""

    def __init__(self, cfg: NetConfig, *, zero_init_last: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.stem = make_stem(cfg)
        stages, in_chs = [], cfg.stem_width
        for stage, (size, _) in zip(cfg.stages, stage_sizes(cfg)):
            blocks = []
            for b in range(stage.depth):
                stride = stage.stride if b == 0 else 1
                blocks.append(Bottleneck(in_chs, stage, stride=stride, expansion=cfg.expansion, size=size))
                in_chs, size = stage.width * cfg.expansion, _down(size, stride)
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(in_chs, cfg.num_classes)
        self.num_features = in_chs
        self._init_weights(zero_init_last)

    def _init_weights(self, zero_init_last: bool) -> None:
        # The GSA modules keep their own initialisation; only the ResNet's layers are set here.
        inside_gsa = {id(sub) for m in self.modules() if isinstance(m, GlobalSelfAttention) for sub in m.modules()}
        for m in self.modules():
            if id(m) in inside_gsa:
                continue
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_last:  # each residual branch starts as zero: the block starts as its shortcut
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.stem(x)                                           # (B, stem_width, H/s, W/s)
        return self.stages(x)                                      # (B, C_last, h, w)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.forward_features(x)).flatten(1)         # (B, C_last)
        return self.head(x)                                        # (B, num_classes)


def build_net(cfg: NetConfig, *, zero_init_last: bool = True) -> ResNet:
    """The network of `cfg`, validated again here (a config may be built by hand)."""
    return ResNet(validate(cfg), zero_init_last=zero_init_last)


def create_net(
    name: str,
    *,
    input_size: int | tuple[int, int] | None = None,
    in_chans: int | None = None,
    num_classes: int | None = None,
    **overrides: Any,
) -> ResNet:
    """Build variant `name`; dotted-key overrides may be passed as `**{"gsa.heads": 2}`.

    Example: `create_net("gsa_resnet_tiny", num_classes=10)(torch.randn(2, 1, 8, 8)).shape == (2, 10)`.
    """
    cfg = build_config(name, input_size=input_size, in_chans=in_chans, num_classes=num_classes,
                       overrides=overrides)
    return build_net(cfg)


