"""adm.compat's modules named like guided-diffusion's: the names forks import, with the original's
signatures and behaviour (checked against formulas and the original's golden outputs)."""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import adm.compat as compat
import golden
from adm.compat import gaussian_diffusion as gd
from adm.compat import nn as gnn
from adm.compat import unet
from adm.core.errors import CheckpointError, UsageError
from adm.hub.checkpoints import save_state_dict

DOCS = Path(__file__).resolve().parents[1] / "docs" / "compat.md"

NAMES = {
    "gaussian_diffusion": [
        "GaussianDiffusion", "ModelMeanType", "ModelVarType", "LossType", "get_named_beta_schedule",
        "betas_for_alpha_bar", "_extract_into_tensor", "mean_flat", "normal_kl", "discretized_gaussian_log_likelihood",
    ],
    "respace": ["SpacedDiffusion", "space_timesteps", "_WrappedModel", "GaussianDiffusion"],
    "unet": [
        "AttentionPool2d", "TimestepBlock", "TimestepEmbedSequential", "Upsample", "Downsample", "ResBlock",
        "AttentionBlock", "QKVAttention", "QKVAttentionLegacy", "count_flops_attn", "UNetModel", "SuperResModel",
        "EncoderUNetModel", "timestep_embedding", "conv_nd", "linear", "avg_pool_nd", "zero_module",
        "normalization", "checkpoint",
    ],
    "nn": [
        "SiLU", "GroupNorm32", "conv_nd", "linear", "avg_pool_nd", "update_ema", "zero_module", "scale_module",
        "mean_flat", "normalization", "timestep_embedding", "checkpoint",
    ],
    "losses": ["normal_kl", "approx_standard_normal_cdf", "discretized_gaussian_log_likelihood"],
    "script_util": [
        "NUM_CLASSES", "model_and_diffusion_defaults", "create_model_and_diffusion", "create_gaussian_diffusion",
        "add_dict_to_argparser", "args_to_dict", "str2bool", "gd", "SpacedDiffusion", "space_timesteps",
        "UNetModel", "SuperResModel", "EncoderUNetModel",
    ],
    "dist_util": ["setup_dist", "dev", "load_state_dict", "sync_params"],
    "logger": ["configure", "log", "get_dir", "logkv", "logkv_mean", "dumpkvs"],
}


@pytest.mark.parametrize("module", NAMES)
def test_the_names_forks_import_are_there(module):
    mod = importlib.import_module(f"adm.compat.{module}")
    assert [n for n in NAMES[module] if not hasattr(mod, n)] == []


def test_docs_list_the_names_of_each_module():
    rows = {line.split("|")[1].strip(" `"): line for line in DOCS.read_text().splitlines() if line.startswith("| `adm.compat")}
    missing = {m: [n for n in names if f"`{n}`" not in rows[f"adm.compat.{m}"] and f"`{n}(" not in rows[f"adm.compat.{m}"]]
               for m, names in NAMES.items()}
    assert all(not names for names in missing.values()), missing


def test_the_diffusion_objects_have_the_private_methods_forks_call():
    spaced = compat.create_gaussian_diffusion(steps=100, timestep_respacing="10")
    assert callable(spaced._scale_timesteps) and callable(spaced._wrap_model)
    assert isinstance(spaced, gd.GaussianDiffusion) and spaced.timestep_map == sorted(compat.space_timesteps(100, "10"))


# --- numerical helpers ---------------------------------------------------------------------------


def test_normal_kl_is_the_gaussian_kl():
    g = torch.Generator().manual_seed(0)
    m1, m2, lv1, lv2 = (torch.randn(64, generator=g, dtype=torch.float64) for _ in range(4))
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(m1, (0.5 * lv1).exp()), torch.distributions.Normal(m2, (0.5 * lv2).exp())
    )
    torch.testing.assert_close(gd.normal_kl(m1, lv1, m2, lv2), expected)
    torch.testing.assert_close(gd.normal_kl(m1, lv1, 0.0, 0.0), gd.normal_kl(m1, lv1, torch.zeros(64), torch.zeros(64)))


def test_discretized_likelihood_is_a_distribution_over_the_256_levels():
    levels = torch.linspace(-1, 1, 256, dtype=torch.float64).view(256, 1)
    means = torch.tensor([[-0.9, -0.2, 0.0, 0.5, 0.97]], dtype=torch.float64).expand(256, 5)
    log_scales = torch.tensor([[-3.0, -1.0, -2.0, -4.0, -0.5]], dtype=torch.float64).expand(256, 5)
    x = levels.expand(256, 5)
    probs = gd.discretized_gaussian_log_likelihood(x, means=means, log_scales=log_scales).exp()
    torch.testing.assert_close(probs.sum(0), torch.ones(5, dtype=torch.float64), rtol=0, atol=1e-9)


@pytest.mark.parametrize("case", ["diffusion_math_cosine_T1000", "diffusion_math_linear_T1000_respace250"])
def test_the_variational_terms_from_the_helpers_equal_the_originals(case):
    """The original's _vb_terms_bpd, rebuilt from its own inputs and outputs with these helpers:
    KL(posterior || model) for t > 0 and the decoder NLL for t = 0, in bits per dimension."""
    io = golden.io(case)
    t = io["t"]
    for variant in ("learned_range", "fixed_large", "fixed_small"):
        mean, log_var = io[f"{variant}/pmv_noclip/mean"], io[f"{variant}/pmv_noclip/log_variance"]
        kl = gd.mean_flat(gd.normal_kl(io["q_posterior_mean"], io["q_posterior_log_variance_clipped"], mean, log_var))
        nll = -gd.mean_flat(gd.discretized_gaussian_log_likelihood(io["x_start"], means=mean, log_scales=0.5 * log_var))
        terms = torch.where(t == 0, nll, kl) / math.log(2.0)
        torch.testing.assert_close(terms, io[f"{variant}/vb_terms_bpd"], rtol=1e-4, atol=1e-5)


def test_betas_for_alpha_bar_is_the_originals_cosine_schedule():
    betas = gd.betas_for_alpha_bar(1000, lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2)
    assert isinstance(betas, np.ndarray) and betas.dtype == np.float64
    np.testing.assert_allclose(betas, golden.io("schedules_T1000")["cosine1000/betas"].numpy(), rtol=1e-12, atol=0)
    assert betas.max() == 0.999  # the cap
    assert gd.betas_for_alpha_bar(4, lambda t: 1 - t, max_beta=0.5).tolist() == pytest.approx([0.25, 1 / 3, 0.5, 0.5], abs=1e-15)


def test_mean_flat_averages_all_but_the_batch():
    x = torch.arange(24.0).view(2, 3, 4)
    assert torch.equal(gnn.mean_flat(x), torch.tensor([5.5, 17.5]))


# --- _wrap_model and _scale_timesteps ----------------------------------------------------------


class Seen:
    def __init__(self):
        self.t = []

    def __call__(self, x, t, **kwargs):
        self.t.append(t.clone())
        return torch.zeros_like(x)


def test_wrap_model_maps_chain_indices_to_the_original_timesteps():
    spaced = compat.create_gaussian_diffusion(steps=100, timestep_respacing="10", rescale_timesteps=True)
    seen = Seen()
    wrapped = spaced._wrap_model(seen)
    assert isinstance(wrapped, compat.respace._WrappedModel) and spaced._wrap_model(wrapped) is wrapped
    wrapped(torch.zeros(2, 3, 4, 4), torch.tensor([0, 9]))
    expected = torch.tensor([spaced.timestep_map[0], spaced.timestep_map[9]]).float() * 10.0
    assert torch.equal(seen.t[0], expected)
    t = torch.tensor([3, 9])
    assert torch.equal(spaced._scale_timesteps(t), t)  # the wrapper scales, as in the original
    plain = compat.GaussianDiffusion(betas=compat.get_named_beta_schedule("linear", 100), model_mean_type=compat.ModelMeanType.EPSILON,
                                     model_var_type=compat.ModelVarType.FIXED_LARGE, loss_type=compat.LossType.MSE, rescale_timesteps=True)
    assert torch.equal(plain._scale_timesteps(t), t.float() * 10.0)


def test_a_wrapped_model_passed_back_is_not_mapped_twice():
    spaced = compat.create_gaussian_diffusion(steps=100, timestep_respacing="10")
    x, t = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)), torch.tensor([9, 4])
    seen_plain, seen_wrapped = Seen(), Seen()
    a = spaced.p_mean_variance(seen_plain, x, t)
    b = spaced.p_mean_variance(spaced._wrap_model(seen_wrapped), x, t)
    assert torch.equal(seen_plain.t[0], seen_wrapped.t[0]) and torch.equal(a["mean"], b["mean"])
    other = compat.create_gaussian_diffusion(steps=100, timestep_respacing="20")
    with pytest.raises(UsageError, match="another diffusion's _wrap_model"):
        spaced.p_mean_variance(other._wrap_model(Seen()), x, t)


# --- nn helpers ------------------------------------------------------------------------------------


def test_timestep_embedding_is_cos_then_sin():
    t = torch.tensor([0.0, 3.5, 999.0])
    emb = gnn.timestep_embedding(t, 9)
    freqs = torch.exp(-math.log(10000) * torch.arange(4) / 4)
    expected = torch.cat([torch.cos(t[:, None] * freqs), torch.sin(t[:, None] * freqs), torch.zeros(3, 1)], dim=1)
    torch.testing.assert_close(emb, expected)


def test_group_norm32_takes_the_originals_argument_order_and_keeps_the_dtype():
    norm = gnn.GroupNorm32(4, 8)
    assert (norm.num_groups, norm.num_channels) == (4, 8)
    x = torch.randn(2, 8, 3, 3)
    torch.testing.assert_close(norm(x), F.group_norm(x, 4, norm.weight, norm.bias))
    assert norm(x.half()).dtype == torch.float16
    assert gnn.GroupNorm32(4, 8, affine=False).weight is None
    assert gnn.normalization(64).num_groups == 32


def test_conv_and_pool_by_dimension():
    assert isinstance(gnn.conv_nd(1, 4, 8, 1), nn.Conv1d) and isinstance(gnn.conv_nd(3, 4, 8, 3), nn.Conv3d)
    assert isinstance(gnn.avg_pool_nd(2, kernel_size=2), nn.AvgPool2d)
    with pytest.raises(ValueError, match="unsupported dimensions"):
        gnn.conv_nd(4, 1, 1, 1)


def test_parameter_helpers():
    layer = nn.Linear(3, 3)
    assert gnn.zero_module(layer) is layer and not layer.weight.any()
    layer.weight.data.fill_(2.0)
    gnn.scale_module(layer, 0.5)
    assert torch.equal(layer.weight, torch.ones(3, 3))
    target, source = [torch.ones(2)], [torch.zeros(2)]
    gnn.update_ema(target, source, rate=0.9)
    torch.testing.assert_close(target[0], torch.full((2,), 0.9))


@pytest.mark.parametrize("flag", [True, False])
def test_checkpoint_gives_the_same_values_and_gradients(flag):
    layer = nn.Linear(4, 4)
    x = torch.randn(3, 4, requires_grad=True)
    out = gnn.checkpoint(lambda v: torch.tanh(layer(v)), (x,), layer.parameters(), flag)
    grads = torch.autograd.grad(out.sum(), (x, layer.weight))
    expected = torch.autograd.grad(torch.tanh(layer(x)).sum(), (x, layer.weight))
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want)


# --- unet building blocks -------------------------------------------------------------------------


def _reference_attention(qkv, heads, order):
    """softmax(q k^T / sqrt(ch)) v per head, the layouts spelled out index by index."""
    b, width, length = qkv.shape
    ch = width // (3 * heads)
    if order == "legacy":  # [head][q|k|v][ch]
        parts = qkv.view(b, heads, 3, ch, length).unbind(2)
    else:  # [q|k|v][head][ch]
        parts = qkv.view(b, 3, heads, ch, length).unbind(1)
    q, k, v = parts
    weights = torch.softmax(torch.einsum("bhct,bhcs->bhts", q, k) / math.sqrt(ch), dim=-1)
    return torch.einsum("bhts,bhcs->bhct", weights, v).reshape(b, heads * ch, length)


@pytest.mark.parametrize(("cls", "order"), [(unet.QKVAttentionLegacy, "legacy"), (unet.QKVAttention, "new")])
def test_qkv_attention_layouts(cls, order):
    qkv = torch.randn(2, 3 * 4 * 8, 10, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(cls(4)(qkv), _reference_attention(qkv, 4, order))


@pytest.mark.parametrize("new_order", [False, True])
def test_attention_block_runs_its_attention_module_and_equals_adms(new_order):
    from adm.models.attention import AttentionBlock

    block = unet.AttentionBlock(64, num_head_channels=16, use_new_attention_order=new_order)
    native = AttentionBlock(64, num_head_channels=16, attention_order="new" if new_order else "legacy")
    for p in block.parameters():
        nn.init.normal_(p, std=0.2)
    native.load_state_dict(block.state_dict())
    calls = []
    block.attention.register_forward_hook(lambda module, args, out: calls.append(out.shape))
    x = torch.randn(2, 64, 4, 4)
    torch.testing.assert_close(block(x), native(x), rtol=1e-5, atol=1e-5)
    assert calls == [(2, 64, 16)] and block.num_heads == 4


def test_blocks_take_the_originals_arguments():
    res = unet.ResBlock(32, 128, 0.0, 64, True)  # positional: ..., out_channels, use_conv
    assert res.skip_connection.weight.shape == (64, 32, 3, 3)
    assert unet.ResBlock(32, 128, 0.0, out_channels=64).skip_connection.weight.shape == (64, 32, 1, 1)
    assert unet.Upsample(32, True, 2, 48).conv.weight.shape == (48, 32, 3, 3)
    assert unet.Downsample(32, True, out_channels=48).op.stride == (2, 2)
    assert unet.AttentionPool2d(4, 64, 16, 10).c_proj.weight.shape == (10, 64, 1)
    with pytest.raises(ValueError, match="only 2-D"):
        unet.ResBlock(32, 128, 0.0, dims=1)


class ForkNet(nn.Module):
    """A fork's own small network assembled from the blocks."""

    def __init__(self):
        super().__init__()
        self.time_embed = nn.Sequential(gnn.linear(32, 128), gnn.SiLU(), gnn.linear(128, 128))
        self.down = unet.TimestepEmbedSequential(
            gnn.conv_nd(2, 3, 32, 3, padding=1),
            unet.ResBlock(32, 128, 0.0, out_channels=64, use_scale_shift_norm=True),
            unet.AttentionBlock(64, num_heads=2),
            unet.Downsample(64, True),
        )
        self.up = unet.TimestepEmbedSequential(unet.ResBlock(64, 128, 0.0, up=True), gnn.normalization(64))

    def forward(self, x, t):
        emb = self.time_embed(gnn.timestep_embedding(t, 32))
        return self.up(self.down(x, emb), emb)


def test_a_forks_network_from_the_blocks_runs_and_keeps_its_key_names():
    net = ForkNet()
    keys = set(net.state_dict())
    assert {"down.1.in_layers.0.weight", "down.1.emb_layers.1.weight", "down.1.out_layers.3.weight",
            "down.1.skip_connection.weight", "down.2.qkv.weight", "down.2.proj_out.weight", "down.3.op.weight",
            "up.0.in_layers.2.weight", "up.1.weight"} <= keys
    out = net(torch.randn(2, 3, 8, 8), torch.tensor([1, 500]))
    assert out.shape == (2, 64, 8, 8)


def _tiny_unet(**extra):
    return compat.UNetModel(16, 3, 32, 6, 1, (2,), 0.0, (1, 2), True, 2, 10, num_head_channels=16, **extra)


def test_the_blocks_inside_a_unet_are_instances_of_the_compat_classes():
    model = _tiny_unet()
    assert model.num_classes == 10 and model.channel_mult == (1, 2)  # positional arguments, the original's order
    kinds = [unet.ResBlock, unet.AttentionBlock, unet.TimestepEmbedSequential, gnn.GroupNorm32]
    assert all(any(isinstance(m, kind) for m in model.modules()) for kind in kinds)

    class ForkResBlock(unet.ResBlock):
        pass

    assert not any(isinstance(m, ForkResBlock) for m in model.modules())


def test_a_forks_forward_override_reads_the_originals_attributes():
    """Forks subclass UNetModel and rewrite forward (to return features, say) from its attributes."""

    class Features(compat.UNetModel):
        def forward(self, x, timesteps, y=None):
            emb = self.time_embed(unet.timestep_embedding(timesteps, self.model_channels))
            if self.num_classes is not None:
                emb = emb + self.label_emb(y)
            h, hs = x.type(self.dtype), []
            for module in self.input_blocks:
                h = module(h, emb)
                hs.append(h)
            h = self.middle_block(h, emb)
            for module in self.output_blocks:
                h = module(torch.cat([h, hs.pop()], dim=1), emb)
            return self.out(h.type(x.dtype))

    model, fork = _tiny_unet(), Features(16, 3, 32, 6, 1, (2,), 0.0, (1, 2), True, 2, 10, num_head_channels=16)
    for p in model.parameters():
        nn.init.normal_(p, std=0.1)
    fork.load_state_dict(model.state_dict())
    x, t, y = torch.randn(2, 3, 16, 16), torch.tensor([3, 80]), torch.tensor([1, 2])
    torch.testing.assert_close(fork(x, t, y), model(x, t, y))


# --- dist_util and logger -----------------------------------------------------------------------


class Payload:
    """Pickled code: unpickling it would run ``touch``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_dist_util_loads_weights_only(tmp_path):
    from adm.compat import dist_util

    save_state_dict({"w": torch.ones(2)}, tmp_path / "ok.pt")
    state = dist_util.load_state_dict(str(tmp_path / "ok.pt"), map_location="cpu")
    assert torch.equal(state["w"], torch.ones(2))
    save_state_dict({"w": torch.ones(2)}, tmp_path / "ok.safetensors")
    assert torch.equal(dist_util.load_state_dict(tmp_path / "ok.safetensors")["w"], torch.ones(2))
    marker = tmp_path / "ran"
    torch.save({"w": torch.ones(2), "payload": Payload(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        dist_util.load_state_dict(str(tmp_path / "evil.pt"), map_location="cpu")
    assert not marker.exists()
    with pytest.raises(UsageError, match="weights only"):
        dist_util.load_state_dict(str(tmp_path / "ok.pt"), weights_only=False)


def test_logger_writes_the_log_folder(tmp_path, capsys):
    from adm.compat import logger

    logger.configure(dir=str(tmp_path), format_strs=["stdout", "log", "csv"])
    try:
        logger.log("creating model")
        logger.logkv("step", 1)
        logger.logkv_mean("loss", 1.0)
        logger.logkv_mean("loss", 2.0)
        assert logger.dumpkvs() == {"step": 1, "loss": 1.5}
        logger.logkv("lr", 0.1)
        logger.dumpkvs()
        assert logger.get_dir() == str(tmp_path)
    finally:
        logger.Logger.CURRENT.close()
        logger.Logger.CURRENT = None
    assert "creating model" in (tmp_path / "log.txt").read_text() and "creating model" in capsys.readouterr().out
    assert (tmp_path / "progress.csv").read_text().splitlines() == ["step,loss,lr", "1,1.5,", ",,0.1"]
