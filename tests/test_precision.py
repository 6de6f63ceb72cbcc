"""Reduced precision and the fast layout stay close to float32, and the defaults are per device."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import adm
from adm.models import optimize_for_inference
from adm.sampling.precision import default_precision, network_call, prepare
from adm.spec.factory import build_classifier, build_model
from adm.spec.flags import ClassifierFlags, parse_flags, parse_model_flags
from tiny import CLASSIFIER_FLAGS, MODEL_FLAGS, UPSAMPLER_FLAGS, randomize


def relerr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def inputs(size=16, batch=3, low_res=None):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=g)
    t = torch.tensor([3.0, 500.5, 999.0][:batch])
    kwargs = {"y": torch.tensor([1, 2, 3][:batch])}
    if low_res:
        kwargs["low_res"] = torch.randn(batch, 3, low_res, low_res, generator=g)
    return x, t, kwargs


@pytest.mark.parametrize("flags, size, low_res", [(MODEL_FLAGS, 16, None), (UPSAMPLER_FLAGS, 32, 16)])
def test_optimized_networks_match_float32(flags, size, low_res):
    net = randomize(build_model(parse_model_flags(flags)), 7).eval()
    keys = {k: v.shape for k, v in net.state_dict().items()}
    x, t, kwargs = inputs(size, low_res=low_res)
    with torch.no_grad():
        ref = net(x, t, **kwargs)
        fast = optimize_for_inference(copy.deepcopy(net), channels_last=True)
        half = optimize_for_inference(copy.deepcopy(net), channels_last=True, dtype=torch.bfloat16)
        assert relerr(fast(x, t, **kwargs), ref) <= 1e-5
        out = half(x, t, **kwargs)
    assert out.is_contiguous() and out.dtype == torch.float32  # NCHW float32 out, whatever inside
    assert relerr(out, ref) <= 2e-2
    assert {k: v.shape for k, v in half.state_dict().items()} == keys  # still the checkpoint's layout


def test_the_guidance_gradient_survives_a_bf16_classifier():
    classifier = randomize(build_classifier(parse_flags(ClassifierFlags, CLASSIFIER_FLAGS)), 3).eval()
    x, t, _ = inputs()
    y = torch.tensor([4, 5, 6])

    def grad(net):
        x_in = x.clone().requires_grad_(True)
        logp = torch.log_softmax(net(x_in, t).float(), -1)[torch.arange(3), y].sum()
        return torch.autograd.grad(logp, x_in)[0]

    ref = grad(classifier)
    half = grad(prepare(copy.deepcopy(classifier), "bf16"))
    cosine = torch.nn.functional.cosine_similarity(ref.flatten(), half.flatten(), dim=0)
    assert cosine > 0.99 and relerr(half, ref) < 0.1


def test_the_guidance_classifier_gets_no_inference_only_kernels(monkeypatch):
    """The classifier is always differentiated: Winograd and blocked attention would step aside at
    every call, and Winograd's filters (98-156 MiB for the released classifiers) would sit unused."""
    from adm.models.blocked_attention import BlockedAttentionBlock
    from adm.models.winograd import WinogradConv2d

    flags = parse_flags(ClassifierFlags, "--image_size 16 --classifier_width 256 --classifier_depth 1 "
                        "--classifier_channel_mult 1,1 --classifier_attention_resolutions 8 "
                        "--classifier_num_head_channels 64 --classifier_num_classes 10")

    def swapped(net):
        return {type(m).__name__ for m in net.modules() if isinstance(m, (WinogradConv2d, BlockedAttentionBlock))}

    assert swapped(prepare(build_classifier(flags), "bf16")) == {"WinogradConv2d", "BlockedAttentionBlock"}
    assert swapped(prepare(build_classifier(flags), "bf16", gradients=True)) == set()
    import adm.api.setup as setup

    prepared = []
    monkeypatch.setattr(setup, "prepare", lambda net, precision, **how: prepared.append((type(net).__name__, how)) or net)
    adm.sample("digits", num_samples=1, steps="2", precision="bf16")  # guided: the preset's classifier
    assert ("NoisyClassifier", {"gradients": True}) in prepared and ("UNet", {"compile": False}) in prepared


def test_the_diffusion_model_runs_in_inference_mode_and_hands_back_a_plain_tensor():
    seen = []

    def model(x, t, **kwargs):
        seen.append(torch.is_inference_mode_enabled())
        return x * 2

    out = network_call(model, torch.device("cpu"), "fp32")(torch.ones(1, 3, 2, 2), torch.zeros(1))
    assert seen == [True] and not out.is_inference()
    out.add_(1)  # the samplers may do arithmetic in place on it
    classifier_call = network_call(model, torch.device("cpu"), "fp32", inference=False)
    classifier_call(torch.ones(1, 3, 2, 2), torch.zeros(1))
    assert seen[-1] is False


def test_default_precision_per_device():
    """fp16 on CUDA for use_fp16 releases (as the original samples them); CPU stays fp32, where the
    same seed gives the same images whatever the batch size (bf16 is opt-in)."""
    assert default_precision(torch.device("cuda"), use_fp16=True) == "fp16"
    assert default_precision(torch.device("cuda"), use_fp16=False) == "fp32"
    assert default_precision(torch.device("cpu"), use_fp16=True) == "fp32"
    assert default_precision(torch.device("cpu"), use_fp16=False) == "fp32"


def test_bf16_sampling_stays_close_to_fp32():
    """The shipped digits model, a deterministic solver: bf16 images differ from fp32 by a few levels."""
    common = dict(sampler="dpm++2m", steps=8, num_samples=6, seed=5, classes="balanced")
    fp32 = adm.sample("digits", precision="fp32", **common)
    bf16 = adm.sample("digits", precision="bf16", **common)
    diff = np.abs(fp32.images.astype(int) - bf16.images.astype(int))
    assert diff.mean() < 3.0  # of 255
    assert np.array_equal(fp32.labels, bf16.labels)


@pytest.mark.slow
def test_compile_gives_the_same_images_within_rounding(monkeypatch):
    """``compile=True`` compiles the diffusion model once and the images stay the same.

    The graphs are traced by dynamo and AOTAutograd as under the default backend, but run by
    ``aot_eager``: inductor's C++ code generation alone took 80 s of a 500 s suite here, and what it
    checks is torch's own code; what adm controls (its networks and sampling loop trace, and the
    compiled model is the one sampled) is what this test keeps."""
    compiled_with, real_compile = [], torch.compile

    def compile_for_the_test(module, **options):
        compiled_with.append(options)
        return real_compile(module, backend="aot_eager", **options)

    monkeypatch.setattr(torch, "compile", compile_for_the_test)
    common = dict(sampler="ddim", steps="3", num_samples=2, seed=1, precision="fp32")
    plain = adm.sample("digits", **common)
    assert compiled_with == []
    compiled = adm.sample("digits", compile=True, **common)
    assert compiled_with == [{}]  # the diffusion model, once, with torch's default backend
    assert np.abs(plain.images.astype(int) - compiled.images.astype(int)).max() <= 2


def test_channels_last_by_default_only_for_wide_networks_on_the_cpu():
    """channels_last made the 32-channel digits U-Net's bf16 forward 2.5x slower, the 192-channel
    ImageNet-64 one faster: the default follows the base width."""
    from adm.models import optimize_for_inference
    from adm.models.inference import WIDE_CHANNELS
    from adm.spec.factory import build_model
    from adm.spec.flags import parse_model_flags

    def conv_is_channels_last(channels: int) -> bool:
        flags = parse_model_flags(f"--image_size 16 --num_channels {channels} --channel_mult 1,2 --num_res_blocks 1 "
                                  "--attention_resolutions 8 --num_head_channels 32")
        net = optimize_for_inference(build_model(flags), dtype=torch.bfloat16)
        weight = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d)).weight
        return weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()

    assert not conv_is_channels_last(32)
    assert conv_is_channels_last(WIDE_CHANNELS)
