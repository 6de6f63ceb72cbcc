"""The bf16 CPU inference paths: Winograd convolutions and blocked attention compute what they replace."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import adm.models.blocked_attention as blocked_module
import adm.models.winograd as winograd
from adm.models import optimize_for_inference
from adm.models.attention import AttentionBlock, attend_tokens
from adm.models.blocked_attention import BlockedAttentionBlock, blocked_attention, query_rows
from adm.models.winograd import WinogradConv2d, winograd_conv3x3, winograd_weight
from adm.spec.factory import build_model
from adm.spec.flags import parse_model_flags
from tiny import randomize


def relerr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.mark.parametrize("budget", [winograd.TILE_BUDGET, 4, 10])  # 4: one tile row per band; 10 on 6x10: 2, then 1
@pytest.mark.parametrize("shape, c_out, bias", [((1, 5, 6, 10), 7, True), ((3, 4, 8, 4), 2, False)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_winograd_is_the_convolution_in_float64(budget, shape, c_out, bias, channels_last):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    weight = torch.randn(c_out, shape[1], 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(c_out, generator=g, dtype=torch.float64) if bias else None
    out = winograd_conv3x3(x, winograd_weight(weight), b, tile_budget=budget)
    torch.testing.assert_close(out, F.conv2d(x, weight, b, padding=1), rtol=1e-10, atol=1e-10)
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_winograd_in_bf16_stays_within_rounding_of_the_exact_convolution():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 256, 8, 8, generator=g)
    weight = torch.randn(256, 256, 3, 3, generator=g) / (9 * 256) ** 0.5
    bias = torch.randn(256, generator=g)
    exact = F.conv2d(x.double(), weight.double(), bias.double(), padding=1)
    direct = F.conv2d(x.bfloat16(), weight.bfloat16(), bias.bfloat16(), padding=1)
    fast = winograd_conv3x3(x.bfloat16(), winograd_weight(weight.bfloat16()), bias.bfloat16())
    assert relerr(fast, exact) < 1e-2
    assert relerr(fast, exact) < 4 * relerr(direct, exact)  # measured about 2x the direct kernel's


def test_odd_maps_are_refused_by_the_kernel_and_run_directly_in_the_module():
    conv = torch.nn.Conv2d(256, 256, 3, padding=1).bfloat16()
    x = torch.randn(1, 256, 5, 6).bfloat16()
    with pytest.raises(ValueError, match="even feature map"):
        winograd_conv3x3(x, winograd_weight(conv.weight), conv.bias)
    fast = WinogradConv2d.from_conv(conv)
    with torch.no_grad():
        assert torch.equal(fast(x), conv(x))


def wide_net():
    """The smallest U-Net with 256-channel convolutions (Winograd's minimum) and attention."""
    flags = parse_model_flags(
        "--image_size 16 --num_channels 128 --num_res_blocks 1 --channel_mult 1,2 --attention_resolutions 8 "
        "--num_head_channels 64 --class_cond True --num_classes 10 --diffusion_steps 100 "
        "--resblock_updown True --use_scale_shift_norm True"
    )
    return randomize(build_model(flags), 5).eval()


def net_inputs():
    g = torch.Generator().manual_seed(2)
    return torch.randn(2, 3, 16, 16, generator=g), torch.tensor([10.0, 700.5]), {"y": torch.tensor([3, 8])}


def test_the_bf16_trunk_on_the_cpu_uses_winograd_and_stays_close_to_float32():
    net = wide_net()
    keys = {k: v.shape for k, v in net.state_dict().items()}
    x, t, kwargs = net_inputs()
    with torch.no_grad():
        ref = net(x, t, **kwargs)
        fast = optimize_for_inference(copy.deepcopy(net), dtype=torch.bfloat16)
        plain = optimize_for_inference(copy.deepcopy(net), dtype=torch.bfloat16, winograd=False)
        with torch.inference_mode():
            out, out_plain = fast(x, t, **kwargs), plain(x, t, **kwargs)
    replaced = [m for m in fast.modules() if isinstance(m, WinogradConv2d)]
    assert replaced and all(max(m.in_channels, m.out_channels) >= winograd.MIN_CHANNELS for m in replaced)
    assert not any(isinstance(m, WinogradConv2d) for m in plain.modules())
    assert {k: v.shape for k, v in fast.state_dict().items()} == keys  # still loads checkpoints
    assert relerr(out, ref) <= 2e-2 and relerr(out_plain, ref) <= 2e-2
    assert not any(isinstance(m, WinogradConv2d) for m in optimize_for_inference(wide_net()).modules())


def test_winograd_filters_are_made_at_conversion_and_follow_loads_and_moves():
    fast = optimize_for_inference(wide_net(), dtype=torch.bfloat16)
    conv = next(m for m in fast.modules() if isinstance(m, WinogradConv2d))
    assert set(conv.state_dict()) == {"weight", "bias"}  # the filters are not saved
    assert torch.equal(conv.filters, winograd_weight(conv.weight))
    x = torch.randn(1, conv.in_channels, 8, 8).bfloat16()
    direct = lambda: F.conv2d(x, conv.weight, conv.bias, padding=1)  # noqa: E731
    with torch.inference_mode():
        before = conv(x)
    fast.load_state_dict(randomize(wide_net(), 9).state_dict())  # copies in place: same storage, new weights
    with torch.inference_mode():
        after, reference = conv(x), direct()
    assert relerr(after, reference) < 1e-2 and relerr(before, reference) > 0.5
    assert not torch.equal(after, reference)  # Winograd ran, not oneDNN
    fast.to("meta")  # .to() takes the filters along with the weights
    assert conv.filters.device.type == "meta" and conv.filters.shape == (16, conv.in_channels, conv.out_channels)


def test_winograd_runs_only_for_even_bf16_maps_without_autograd_or_compile(monkeypatch):
    fast = optimize_for_inference(wide_net(), dtype=torch.bfloat16)
    conv = next(m for m in fast.modules() if isinstance(m, WinogradConv2d))
    x = torch.randn(1, conv.in_channels, 8, 8).bfloat16()
    direct = lambda: F.conv2d(x, conv.weight, conv.bias, padding=1)  # noqa: E731
    with torch.inference_mode():
        calls = []
        monkeypatch.setattr(winograd, "winograd_conv3x3", lambda *a: calls.append(a) or direct())
        conv(x)
        torch.nn.Conv2d.forward(conv, x)
        conv(x[:0])  # an empty batch goes to the ordinary convolution
        assert len(calls) == 1 and calls[0][1] is conv.filters
        monkeypatch.undo()
    with torch.inference_mode():
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
        assert torch.equal(conv(x), direct())  # what torch.compile traces: the ordinary convolution
        monkeypatch.undo()
    x.requires_grad_(True)
    out = conv(x)  # autograd on: the ordinary convolution, bit for bit
    assert out.requires_grad and torch.equal(out, direct())


def test_the_blocked_kernel_matches_sdpa_within_rounding():
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 300, 3, 16, generator=g).transpose(1, 2) for _ in range(3))  # token-major
    assert query_rows(300) == 256 and query_rows(64) == 64  # blocks of 256 and 44 query rows
    exact = F.scaled_dot_product_attention(q.double(), k.double(), v.double()).transpose(1, 2).reshape(2, 300, 48)
    with torch.inference_mode():
        blocked = blocked_attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
        fused = attend_tokens(q.bfloat16(), k.bfloat16(), v.bfloat16())  # the generic path: SDPA
        sdpa = F.scaled_dot_product_attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert torch.equal(fused, sdpa.transpose(1, 2).reshape(2, 300, 48))
    assert blocked.shape == (2, 300, 48) and relerr(blocked, exact) < 1e-2
    assert not torch.equal(blocked, fused)  # not SDPA's kernel
    assert relerr(blocked, exact) < 3 * relerr(fused, exact)


def test_bf16_conversion_swaps_in_blocked_attention_used_only_for_bf16_inference(monkeypatch):
    net = wide_net()
    fast = optimize_for_inference(copy.deepcopy(net), dtype=torch.bfloat16)
    plain = optimize_for_inference(copy.deepcopy(net), dtype=torch.bfloat16, blocked_attention=False)
    assert {k: v.shape for k, v in fast.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}
    pairs = [(m, p) for m, p in zip(fast.modules(), plain.modules(), strict=True) if isinstance(m, AttentionBlock)]
    assert pairs and all(type(m) is BlockedAttentionBlock and type(p) is AttentionBlock for m, p in pairs)
    assert not any(isinstance(m, BlockedAttentionBlock) for m in optimize_for_inference(wide_net()).modules())
    block, reference = pairs[0]
    x = torch.randn(2, block.channels, 8, 8).bfloat16()
    with torch.inference_mode():
        out, sdpa = block(x), reference(x)
        calls = []
        monkeypatch.setattr(blocked_module, "blocked_attention", lambda *a: calls.append(a) or attend_tokens(*a))
        block(x)
        assert len(calls) == 1
        monkeypatch.undo()
    assert relerr(out, sdpa) < 1e-2 and not torch.equal(out, sdpa)  # blocked, not SDPA's kernel
    with torch.enable_grad():  # the guidance classifier's input gradient: SDPA, bit for bit
        assert torch.equal(block(x.requires_grad_(True)), reference(x))
    wide = next(m for m in net.modules() if isinstance(m, AttentionBlock))  # float32: SDPA
    y = torch.randn(2, wide.channels, 8, 8)
    with torch.inference_mode():
        assert torch.equal(BlockedAttentionBlock.from_block(wide)(y), wide(y))


def test_weights_made_in_inference_mode_run_winograd_too():
    with torch.inference_mode():  # inference tensors: nothing of the filters depends on version counters
        conv = WinogradConv2d.from_conv(torch.nn.Conv2d(256, 256, 3, padding=1).bfloat16())
        x = torch.randn(1, 256, 4, 4).bfloat16()
        out, direct = conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1)
    assert not torch.equal(out, direct) and relerr(out, direct) < 1e-2
