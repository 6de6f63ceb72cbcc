"""Unit tests of adm.models on tiny configurations (parity with the original: test_models_golden)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import adm.models.layers as layers
from adm.models import (
    AttentionPool2d,
    GroupNorm32,
    NoisyClassifier,
    SuperResUNet,
    UNet,
    count_parameters,
    timestep_embedding,
)
from adm.models.attention import split_qkv

TINY = dict(
    image_size=8,
    in_channels=3,
    model_channels=32,
    out_channels=3,
    num_res_blocks=1,
    attention_resolutions=(2,),
    channel_mult=(1, 2),
    num_head_channels=16,
)


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Overwrite the zero-initialised output layers so outputs and gradients are non-trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            for name, p in module.named_parameters(recurse=False):
                noise = torch.randn(p.shape, generator=g)
                if isinstance(module, torch.nn.GroupNorm) and name == "weight":
                    p.copy_(1 + 0.1 * noise)
                elif p.ndim > 1:
                    p.copy_(noise / math.sqrt(p[0].numel()))
                else:
                    p.copy_(0.05 * noise)
    return model


def inputs(n=2, size=8, channels=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, channels, size, size, generator=g), torch.tensor([3, 917])


# --- timestep embedding --------------------------------------------------------------------------


def test_timestep_embedding_known_values_cos_first():
    emb = timestep_embedding(torch.tensor([0, 1, 999]), 8)
    expected_t1 = [0.5403, 0.9950, 0.99995, 1.0000, 0.8415, 0.0998, 0.0100, 0.0010]
    torch.testing.assert_close(emb[1], torch.tensor(expected_t1), atol=1e-4, rtol=0)
    torch.testing.assert_close(emb[0], torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0]))
    assert emb.dtype == torch.float32


def test_timestep_embedding_fractional_and_odd_dim():
    t = torch.tensor([0.5, 2.25])
    emb = timestep_embedding(t, 6)
    torch.testing.assert_close(emb[:, 0], torch.cos(t))
    torch.testing.assert_close(emb[:, 3], torch.sin(t))
    odd = timestep_embedding(t, 7)
    assert odd.shape == (2, 7)
    torch.testing.assert_close(odd[:, :6], emb)
    assert torch.all(odd[:, 6] == 0)


# --- shapes and conditioning ---------------------------------------------------------------------


def test_unet_output_shape_and_scalar_timestep():
    model = randomize(UNet(**{**TINY, "out_channels": 6})).eval()
    x, t = inputs()
    with torch.no_grad():
        out = model(x, t)
        assert out.shape == (2, 6, 8, 8)
        torch.testing.assert_close(model(x, torch.tensor(5)), model(x, torch.tensor([5, 5])))


def test_superres_output_shape_and_low_res_matters():
    model = randomize(SuperResUNet(**{**TINY, "image_size": 16, "num_classes": 10})).eval()
    assert model.input_blocks[0][0].in_channels == 6
    x, t = inputs(size=16)
    low_res, _ = inputs(size=8, seed=2)
    y = torch.tensor([1, 7])
    with torch.no_grad():
        out = model(x, t, low_res, y=y)
        assert out.shape == (2, 3, 16, 16)
        assert not torch.allclose(out, model(x, t, torch.zeros_like(low_res), y=y))


def test_class_conditioning_errors_are_clear():
    cond = UNet(**TINY, num_classes=10)
    x, t = inputs()
    with pytest.raises(ValueError, match="class-conditional.*pass labels y"):
        cond(x, t)
    with pytest.raises(ValueError, match="unconditional"):
        UNet(**TINY)(x, t, y=torch.tensor([0, 1]))


@pytest.mark.parametrize("pool", ["adaptive", "attention", "spatial", "spatial_v2"])
def test_classifier_pools(pool):
    model = randomize(NoisyClassifier(**{**TINY, "out_channels": 10}, pool=pool))
    x, t = inputs()
    logits = model(x, t)
    assert logits.shape == (2, 10)
    logits.sum().backward()
    assert model.out[0].weight.grad is not None


def test_bad_options_raise_value_error():
    with pytest.raises(ValueError, match="attention_order"):
        UNet(**TINY, attention_order="newest")
    with pytest.raises(ValueError, match="pool"):
        NoisyClassifier(**TINY, pool="max")
    with pytest.raises(ValueError, match="heads of 24"):
        UNet(**{**TINY, "num_head_channels": 24})


@pytest.mark.parametrize("unset", [-1, None])
def test_head_counts(unset):
    def heads(model):
        return [m.num_heads for m in model.modules() if hasattr(m, "qkv")]

    cfg = {**TINY, "num_head_channels": unset, "num_heads": 2}
    # Attention at ds=2 only: input_blocks.3, the middle block, output_blocks.0..1.
    assert heads(UNet(**cfg, num_heads_upsample=unset)) == [2, 2, 2, 2]
    assert heads(UNet(**cfg, num_heads_upsample=4)) == [2, 2, 4, 4]
    assert heads(UNet(**TINY, num_heads=2)) == [4, 4, 4, 4]  # 64 channels / 16 per head


def test_count_parameters():
    model = UNet(**TINY)
    assert count_parameters(model) == sum(v.numel() for v in model.state_dict().values())


def test_models_build_on_meta_device():
    with torch.device("meta"):
        model = UNet(**{**TINY, "image_size": 256, "model_channels": 256}, num_classes=1000)
    assert next(model.parameters()).is_meta


# --- attention -----------------------------------------------------------------------------------


def test_qkv_layouts_differ_by_a_row_permutation():
    """A "new"-layout checkpoint, with its qkv rows permuted, gives the same output as "legacy"."""
    new = randomize(UNet(**TINY, attention_order="new")).eval()
    legacy = UNet(**TINY, attention_order="legacy").eval()
    state = new.state_dict()
    for key in [k for k in state if k.endswith((".qkv.weight", ".qkv.bias"))]:
        block = legacy.get_submodule(key.rsplit(".", 2)[0])
        heads, ch = block.num_heads, block.channels // block.num_heads
        # new rows: [part][head][c]  ->  legacy rows: [head][part][c]
        rows = state[key].reshape(3, heads, ch, *state[key].shape[1:])
        state[key] = rows.transpose(0, 1).reshape(state[key].shape)
    legacy.load_state_dict(state)
    x, t = inputs()
    with torch.no_grad():
        torch.testing.assert_close(legacy(x, t), new(x, t), rtol=1e-5, atol=1e-5)


def test_attention_pool_returns_the_mean_token_of_full_attention():
    pool = randomize(AttentionPool2d(4, 32, 16, 10))
    x = torch.randn(2, 32, 4, 4, generator=torch.Generator().manual_seed(0))
    tokens = torch.cat([x.flatten(2).mean(-1, keepdim=True), x.flatten(2)], -1)
    tokens = tokens + pool.positional_embedding
    q, k, v = split_qkv(pool.qkv_proj(tokens), pool.num_heads, "new")
    full = F.scaled_dot_product_attention(q, k, v).transpose(-1, -2).reshape(2, 32, -1)
    torch.testing.assert_close(pool(x), pool.c_proj(full)[:, :, 0])


# --- precision and memory -------------------------------------------------------------------------


def test_groupnorm32_computes_in_float32(monkeypatch):
    seen = []
    real = F.group_norm

    def spy(x, groups, weight, bias, eps):
        seen.append((x.dtype, weight.dtype))
        return real(x, groups, weight, bias, eps)

    monkeypatch.setattr(F, "group_norm", spy)
    norm = randomize(GroupNorm32(64))
    x = (torch.randn(2, 64, 4, 4, generator=torch.Generator().manual_seed(0)) * 3 + 50).bfloat16()
    expected = real(x.float(), 32, norm.weight, norm.bias, 1e-5).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = norm(x)
    half = norm.to(torch.bfloat16)(x)  # also with bf16 parameters
    assert out.dtype == half.dtype == torch.bfloat16
    assert torch.equal(out, expected)
    assert seen == [(torch.float32, torch.float32)] * 2


def test_bf16_autocast_forward_is_close_to_float32():
    model = randomize(UNet(**TINY, num_classes=10, use_scale_shift_norm=True)).eval()
    x, t = inputs()
    y = torch.tensor([2, 3])
    with torch.no_grad():
        ref = model(x, t, y)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x, t, y)
    assert out.dtype == torch.bfloat16
    err = ((out.float() - ref).abs().max() / ref.std()).item()
    assert err < 0.1, err
    with torch.no_grad():  # a model cast wholesale to bf16 runs too (no convert_to_fp16 needed)
        half = model.to(torch.bfloat16)(x.bfloat16(), t, y)
    assert ((half.float() - ref).abs().max() / ref.std()).item() < 0.2


def test_gradient_checkpointing_gives_identical_gradients(monkeypatch):
    calls = []
    real = layers.checkpoint
    monkeypatch.setattr(layers, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    grads = []
    for use_checkpoint in (False, True):
        cfg = {**TINY, "dropout": 0.2}
        model = randomize(UNet(**cfg, use_checkpoint=use_checkpoint, resblock_updown=True))
        x, t = inputs()
        x.requires_grad_(True)
        torch.manual_seed(0)  # same dropout masks; the recomputation restores the RNG state
        model(x, t).square().mean().backward()
        grads.append([x.grad] + [p.grad for p in model.parameters()])
    assert calls, "use_checkpoint=True did not checkpoint the ResBlocks"
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
