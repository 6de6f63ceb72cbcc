"""Winograd F(2x2, 3x3) convolution: the 3x3 convolutions of a bf16 trunk on the CPU, for inference.

Why: in a bf16 forward of the ImageNet networks on the CPU, 3x3 convolutions are ~70% of the time
and oneDNN already runs them at the machine's bf16 GEMM peak, so the only way left to make them
faster is fewer multiplications. Winograd's minimal filtering computes each 2x2 output tile from a
4x4 input tile with 16 products per channel pair instead of 36: the convolution becomes 16
independent GEMMs (one per tile position) between transformed inputs and transformed weights, with
cheap add/subtract transforms around them (Lavin & Gray 2016, "Fast Algorithms for Convolutional
Neural Networks"). The transforms' coefficients are 0, ±1 and ±1/2, so they lose little precision.

Where it gains and what it costs are measured in docs/performance.md (``benchmarks/cpu_kernels.py``,
interleaved, per layer shape): faster than oneDNN's direct bf16 convolution at 32x32 and smaller
maps, less so at 64x64, where the transforms' memory traffic eats most of the saved products, and
no clear gain at 192 channels. Its error against a float64 convolution is about twice the direct
bf16 kernel's, since the transformed tiles are rounded to bf16. The transformed filters are kept
beside the weights: 16/9 of the memory of the weights they come from.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# G of F(2x2, 3x3): the weight transform U = G g G^T of each 3x3 filter g into a 4x4 tile.
_FILTER_TRANSFORM = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))
# Tiles of 2x2 outputs processed per band, so the transformed band stays in cache: 512 was the
# fastest of 256/512/1024, or tied, at one and two threads on the ImageNet-64 network's shapes.
TILE_BUDGET = 512
# Narrower convolutions are left to oneDNN: at 192 -> 192 channels Winograd showed no clear gain
# (docs/performance.md).
MIN_CHANNELS = 256


def winograd_weight(weight: torch.Tensor) -> torch.Tensor:
    """The transformed filters of a [C_out, C_in, 3, 3] weight, as 16 GEMM operands [16, C_in, C_out].

    Computed in float64 and rounded once to the weight's dtype. Each [C_in, C_out] operand is stored
    transposed (C_out-major): bf16 batched GEMMs on the CPU ran faster with that layout.
    """
    g = torch.tensor(_FILTER_TRANSFORM, dtype=torch.float64, device=weight.device)
    tiles = torch.einsum("ak,oikl,bl->abio", g, weight.double(), g)  # [4, 4, C_in, C_out]
    c_out, c_in = weight.shape[:2]
    return tiles.reshape(16, c_in, c_out).transpose(1, 2).contiguous().to(weight.dtype).transpose(1, 2)


def _input_transform(tiles: torch.Tensor) -> torch.Tensor:
    """B^T d B of every 4x4 input tile: [N, I, J, 4, 4, C] -> [4, 4, N, I, J, C]."""
    rows = tiles.new_empty(4, *tiles.shape[:3], 4, tiles.shape[-1])
    d = tiles.unbind(3)
    torch.sub(d[0], d[2], out=rows[0])
    torch.add(d[1], d[2], out=rows[1])
    torch.sub(d[2], d[1], out=rows[2])
    torch.sub(d[1], d[3], out=rows[3])
    out = tiles.new_empty(4, 4, *tiles.shape[:3], tiles.shape[-1])
    r = rows.unbind(-2)
    torch.sub(r[0], r[2], out=out[:, 0])
    torch.add(r[1], r[2], out=out[:, 1])
    torch.sub(r[2], r[1], out=out[:, 2])
    torch.sub(r[1], r[3], out=out[:, 3])
    return out


def _output_transform(products: torch.Tensor, out: torch.Tensor) -> None:
    """A^T m A of every 4x4 product tile [4, 4, N, I, J, C] into the 2x2 outputs ``out`` [N, I, 2, J, 2, C]."""
    m = products.unbind(0)
    rows = products.new_empty(2, *products.shape[1:])
    torch.add(m[0], m[1], out=rows[0]).add_(m[2])
    torch.sub(m[1], m[2], out=rows[1]).sub_(m[3])
    for a in range(2):
        r = rows[a].unbind(0)
        torch.add(r[0], r[1], out=out[:, :, a, :, 0]).add_(r[2])
        torch.sub(r[1], r[2], out=out[:, :, a, :, 1]).sub_(r[3])


def winograd_conv3x3(
    x: torch.Tensor, filters: torch.Tensor, bias: torch.Tensor | None, tile_budget: int = TILE_BUDGET
) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=1)`` for even H and W, given ``winograd_weight(weight)``.

    ``x`` is [N, C_in, H, W] in any memory format; the result is [N, C_out, H, W], channels_last.
    ``tile_budget``: output tiles transformed per band.
    """
    n, c_in, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"Winograd F(2x2, 3x3) needs an even feature map, got {h}x{w}")
    c_out = filters.shape[-1]
    padded = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1).contiguous()  # NHWC; a view if channels_last
    s_n, s_h, s_w, _ = padded.stride()
    tiles = padded.as_strided((n, h // 2, w // 2, 4, 4, c_in), (s_n, 2 * s_h, 2 * s_w, s_h, s_w, 1))
    out = x.new_empty(n, h // 2, 2, w // 2, 2, c_out)
    band = max(1, tile_budget // (n * (w // 2)))  # rows of tiles per band
    for start in range(0, h // 2, band):
        part = tiles[:, start : start + band]
        products = torch.bmm(_input_transform(part).view(16, -1, c_in), filters)
        products = products.view(4, 4, *part.shape[:3], c_out)
        if bias is not None:
            products[1, 1] += bias  # m[1,1] enters all four outputs with coefficient +1
        _output_transform(products, out[:, start : start + band])
    return out.view(n, h, w, c_out).permute(0, 3, 1, 2)


class WinogradConv2d(nn.Conv2d):
    """A 3x3, stride-1, padding-1 ``nn.Conv2d`` that runs bf16 CPU inference through Winograd.

    Same parameters and ``state_dict`` keys as the convolution it replaces (``from_conv`` shares
    its Parameters). Everything else (float32, other devices, autograd, odd feature maps, and
    ``torch.compile``, whose inductor makes its own convolution choices) runs the ordinary
    convolution.

    The transformed filters are computed once, at conversion, into the non-persistent buffer
    ``filters``: ``.to()`` moves and casts them with the weights, they are not in the
    ``state_dict``, and ``load_state_dict`` recomputes them. adm changes no weight after
    conversion; whoever changes ``weight`` any other way (in place, or by assigning a new one)
    must call ``refresh_filters()``, or convert again.
    """

    filters: torch.Tensor

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> WinogradConv2d:
        if not winograd_eligible(conv):
            raise ValueError(f"not a 3x3 stride-1 padding-1 convolution: {conv}")
        new = cls(conv.in_channels, conv.out_channels, 3, padding=1, bias=conv.bias is not None, device="meta")
        new.weight, new.bias = conv.weight, conv.bias  # the same Parameters: one set of weights
        new.register_buffer("filters", None, persistent=False)
        new.refresh_filters()
        new.register_load_state_dict_post_hook(_refresh_after_load)
        new.train(conv.training)
        return new

    def refresh_filters(self) -> None:
        """Recompute ``filters`` from ``weight``."""
        with torch.no_grad():  # a constant of inference, not part of the weight's autograd graph
            self.filters = winograd_weight(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            not torch.compiler.is_compiling()
            and x.device.type == "cpu"
            and x.dtype == torch.bfloat16 == self.weight.dtype
            and not torch.is_grad_enabled()
            and x.numel() > 0
            and x.shape[-2] % 2 == 0
            and x.shape[-1] % 2 == 0
        ):
            return winograd_conv3x3(x, self.filters, self.bias)
        return super().forward(x)


def _refresh_after_load(module: WinogradConv2d, _incompatible_keys) -> None:
    module.refresh_filters()


def winograd_eligible(conv: nn.Module) -> bool:
    """A plain 3x3 convolution Winograd F(2x2, 3x3) computes exactly, and wide enough to gain."""
    return (
        type(conv) is nn.Conv2d
        and conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.padding == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and max(conv.in_channels, conv.out_channels) >= MIN_CHANNELS
    )
