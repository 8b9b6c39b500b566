"""CycleGAN networks as in Zhu et al. 2017 (and the authors' pytorch-CycleGAN-and-pix2pix).

ResnetGenerator: c7s1-ngf, d(2ngf), d(4ngf), n × R(4ngf), u(2ngf), u(ngf), c7s1-3 with reflection
padding, instance norm and tanh: (N,3,H,W) in [-1,1] -> (N,3,H,W) in [-1,1], H and W multiples of 4.
Upsampling `u` is the paper's stride-2 transposed convolution, or (upsample="resize") a nearest
resize followed by a 3×3 convolution: transposed convolutions with a kernel not divisible by their
stride overlap unevenly and print a checkerboard (Odena et al. 2016), resize-convolution cannot.
PatchDiscriminator: the 70×70 PatchGAN at n_layers=3, (N,3,H,W) -> (N,1,H/8-2,W/8-2) logits.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

Norm = functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)


class ReflectionPad2d(nn.ReflectionPad2d):
    """nn.ReflectionPad2d that pads in its input's dtype under autocast. CPU autocast lists
    reflection padding as a float32 op, so every bf16 activation was copied to float32, padded, and
    copied back to bf16 by the next convolution: the same values (padding only moves them) for
    two copies per padded convolution (demo CycleGAN step, bf16, one thread of the 2-core Xeon,
    interleaved: 0.228 -> 0.219 s). Only the backward pass's sums at the borders round in bf16."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x)


class ResnetBlock(nn.Module):
    """x + [reflect-pad, conv3×3, IN, ReLU, reflect-pad, conv3×3, IN](x)."""

    def __init__(self, dim: int, use_dropout: bool = False):
        super().__init__()
        layers: list[nn.Module] = [ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), Norm(dim),
                                   nn.ReLU(True)]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        layers += [ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), Norm(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


def upsample_block(in_ch: int, out_ch: int, mode: str = "transpose") -> list[nn.Module]:
    """×2 upsampling convolution: the paper's transposed conv, or nearest resize + 3×3 conv."""
    if mode == "transpose":
        return [nn.ConvTranspose2d(in_ch, out_ch, 3, stride=2, padding=1, output_padding=1, bias=True)]
    if mode == "resize":
        return [nn.Upsample(scale_factor=2, mode="nearest"), ReflectionPad2d(1), nn.Conv2d(in_ch, out_ch, 3)]
    raise ValueError(f"upsample {mode!r}: expected 'transpose' or 'resize'")


class ResnetGenerator(nn.Module):
    """Image-to-image generator; ngf=64, n_blocks=9 has 11,378,179 parameters (either upsampling)."""

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, n_blocks: int = 9,
                 use_dropout: bool = False, upsample: str = "transpose"):
        super().__init__()
        # Instance norm has no affine shift, so the convolutions keep their bias (as the original).
        layers: list[nn.Module] = [ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=True), Norm(ngf),
                                   nn.ReLU(True)]
        for i in range(2):  # downsampling
            mult = 2**i
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=True),
                       Norm(ngf * mult * 2), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4, use_dropout) for _ in range(n_blocks)]
        for i in range(2):  # upsampling (transposed convolutions, as the original, or resize-conv)
            mult = 2 ** (2 - i)
            layers += [*upsample_block(ngf * mult, ngf * mult // 2, upsample), Norm(ngf * mult // 2), nn.ReLU(True)]
        layers += [ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def nce_layers(self) -> list[int]:
        """Indices of `model` whose outputs CUT's PatchNCE compares (as the CUT authors' 0,4,8,12,16
        for 9 blocks): the padded input, the first downsampling conv, the second's norm, and
        residual blocks a third and two thirds of the way through the encoder's blocks."""
        n_blocks = sum(isinstance(m, ResnetBlock) for m in self.model)
        first = 10  # the first residual block
        return sorted({0, 4, 8, first + n_blocks // 3, first + (2 * n_blocks) // 3})

    def forward_features(self, x: torch.Tensor, layers: list[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The output and the feature maps after the given layer indices, in one pass."""
        feats = []
        for i, layer in enumerate(self.model):
            x = layer(x)
            if i in layers:
                feats.append(x)
        return x, feats

    def encode(self, x: torch.Tensor, layers: list[int]) -> list[torch.Tensor]:
        """Feature maps after the given layer indices of `model`, in order."""
        feats, last = [], max(layers)
        for i, layer in enumerate(self.model):
            x = layer(x)
            if i in layers:
                feats.append(x)
            if i == last:
                break
        return feats


class PatchDiscriminator(nn.Module):
    """PatchGAN: n_layers=3 gives 70×70 receptive fields; ndf=64 has 2,764,737 parameters."""

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        kw, pad = 4, 1
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, kw, stride=2, padding=pad),
                                   nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, kw, stride=2, padding=pad, bias=True),
                       Norm(ndf * mult), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, kw, stride=1, padding=pad, bias=True),
                   Norm(ndf * mult), nn.LeakyReLU(0.2, True),
                   nn.Conv2d(ndf * mult, 1, kw, stride=1, padding=pad)]  # one logit per patch
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """Conv weights ~ N(0, gain), biases 0 (the paper's 'normal' init)."""

    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    return net.apply(_init)


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def receptive_field(net: nn.Module) -> int:
    """Theoretical receptive field (pixels, one side) of a chain of convolutions, e.g. 121 for a
    6-block ResnetGenerator and 169 for 9 blocks. Modules are taken in definition order, which is
    the data path for these networks (a residual branch adds its convolutions' reach)."""
    r, jump = 1.0, 1.0
    for m in net.modules():
        if isinstance(m, nn.ConvTranspose2d):
            k, s = m.kernel_size[0], m.stride[0]
            r += (-(-k // s) - 1) * jump  # an output pixel sees ceil(k/s) inputs
            jump /= s
        elif isinstance(m, nn.Conv2d):
            k, s, d = m.kernel_size[0], m.stride[0], m.dilation[0]
            r += (k - 1) * d * jump
            jump *= s
    return int(round(r))
