"""adm.compat's sampling loops as research forks drive them, without forking the loop.

Small reproductions, written for these tests, of how ILVR (low-pass correction), blended diffusion
(masked background), RePaint (re-noising with ``_extract_into_tensor``, revisiting steps) and
DiffPure (``q_sample`` then a partial reverse chain) use guided-diffusion's diffusion object.
The loops' contract is the original's: the next step starts from ``out["sample"]`` as the
caller's loop body left it.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import adm.compat as compat
from adm.compat.gaussian_diffusion import _extract_into_tensor
from tiny import randomize

SHAPE = (2, 3, 16, 16)
LOOPS = {"ddpm": ("p_sample_loop_progressive", "p_sample"), "ddim": ("ddim_sample_loop_progressive", "ddim_sample")}


@pytest.fixture(scope="module")
def net():
    """A tiny class-conditional model with random weights on a 100-step chain respaced to 10."""
    args = compat.model_and_diffusion_defaults()
    args.update(image_size=16, num_channels=32, num_res_blocks=1, channel_mult="1,2", attention_resolutions="8",
                num_head_channels=16, learn_sigma=True, class_cond=True, diffusion_steps=100,
                timestep_respacing="10", resblock_updown=True, use_scale_shift_norm=True)
    model, diffusion = compat.create_model_and_diffusion(**args)
    return randomize(model, 5).eval(), diffusion


def _tensors(seed: int, steps: int):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(SHAPE, generator=g), torch.randn((steps, *SHAPE), generator=g)


class Recording:
    """The model, recording the inputs and timesteps it is called with."""

    def __init__(self, model):
        self.model, self.x, self.t = model, [], []

    def __call__(self, x, t, **kwargs):
        self.x.append(x.clone())
        self.t.append(t.clone())
        return self.model(x, t, **kwargs)


def _corrected_run(diffusion, model, kind, correct, noise, step_noise, y):
    """The fork's way: iterate the progressive loop and reassign ``out["sample"]``."""
    loop = getattr(diffusion, LOOPS[kind][0])
    outs = []
    for k, out in enumerate(loop(model, SHAPE, noise=noise, step_noise=step_noise, model_kwargs={"y": y}, device="cpu")):
        index = diffusion.num_timesteps - 1 - k
        out["sample"] = correct(out["sample"], index)
        outs.append(out)
    return outs


def _manual_run(diffusion, model, kind, correct, noise, step_noise, y):
    """The same chain written out step by step with the single-step method."""
    step = getattr(diffusion, LOOPS[kind][1])
    x = noise
    for k, index in enumerate(reversed(range(diffusion.num_timesteps))):
        t = torch.full((SHAPE[0],), index)
        with torch.no_grad():
            x = correct(step(model, x, t, model_kwargs={"y": y}, step_noise=step_noise[k])["sample"], index)
    return x


def _clamp(x, index):
    return x.clamp(-0.1, 0.1)


@pytest.mark.parametrize("kind", LOOPS)
def test_reassigning_the_yielded_sample_steers_the_next_step(net, kind):
    model, diffusion = net
    noise, step_noise = _tensors(1, diffusion.num_timesteps)
    y = torch.tensor([3, 7])
    recording = Recording(model)
    outs = _corrected_run(diffusion, recording, kind, _clamp, noise, step_noise, y)
    assert torch.equal(recording.x[0], noise)
    for seen, previous in zip(recording.x[1:], outs[:-1], strict=True):
        assert torch.equal(seen, previous["sample"])  # each step started from the clamped value
    assert outs[-1]["sample"].abs().max() <= 0.1
    manual = _manual_run(diffusion, model, kind, _clamp, noise, step_noise, y)
    assert torch.equal(outs[-1]["sample"], manual)


def test_the_loop_body_runs_without_autograd_as_in_the_original(net):
    model, diffusion = net
    noise, step_noise = _tensors(2, diffusion.num_timesteps)
    modes = [torch.is_grad_enabled() for _ in diffusion.ddim_sample_loop_progressive(
        model, SHAPE, noise=noise, step_noise=step_noise, model_kwargs={"y": torch.tensor([0, 1])})]
    assert modes == [False] * diffusion.num_timesteps
    assert torch.is_grad_enabled()


def _low_pass(x, factor=4):
    return F.interpolate(F.avg_pool2d(x, factor), scale_factor=factor, mode="nearest")


def test_ilvr_like_low_pass_correction(net):
    """ILVR: replace each sample's low frequencies with those of the reference at the same level."""
    model, diffusion = net
    noise, step_noise = _tensors(3, diffusion.num_timesteps)
    g = torch.Generator().manual_seed(4)
    reference = torch.rand(SHAPE, generator=g) * 2 - 1
    ref_noise = torch.randn((diffusion.num_timesteps, *SHAPE), generator=g)

    def correct(x, index):  # x is x_{index-1}: noise the reference to that level
        level = reference if index == 0 else diffusion.q_sample(reference, torch.full((2,), index - 1), noise=ref_noise[index])
        return x - _low_pass(x) + _low_pass(level)

    y = torch.tensor([1, 2])
    outs = _corrected_run(diffusion, model, "ddpm", correct, noise, step_noise, y)
    final = outs[-1]["sample"]
    torch.testing.assert_close(_low_pass(final), _low_pass(reference), rtol=0, atol=1e-5)
    assert torch.equal(final, _manual_run(diffusion, model, "ddpm", correct, noise, step_noise, y))
    uncorrected = diffusion.p_sample_loop(model, SHAPE, noise=noise, step_noise=step_noise, model_kwargs={"y": y})
    assert (_low_pass(uncorrected) - _low_pass(reference)).abs().max() > 0.1


def test_blended_like_masked_background(net):
    """Blended diffusion: outside the edit mask, put back the background noised to the same level."""
    model, diffusion = net
    noise, step_noise = _tensors(5, diffusion.num_timesteps)
    g = torch.Generator().manual_seed(6)
    background = torch.rand(SHAPE, generator=g) * 2 - 1
    background_noise = torch.randn((diffusion.num_timesteps, *SHAPE), generator=g)
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1  # the region being generated

    def correct(x, index):
        level = background if index == 0 else diffusion.q_sample(background, torch.full((2,), index - 1), noise=background_noise[index])
        return x * mask + level * (1 - mask)

    y = torch.tensor([4, 5])
    final = _corrected_run(diffusion, model, "ddim", correct, noise, step_noise, y)[-1]["sample"]
    assert torch.equal(final * (1 - mask), background * (1 - mask))
    assert (final - background)[..., 4:12, 4:12].abs().max() > 0.1
    assert torch.equal(final, _manual_run(diffusion, model, "ddim", correct, noise, step_noise, y))


def test_extract_into_tensor_reads_the_schedule_arrays_as_the_original(net):
    _, diffusion = net
    t = torch.tensor([9, 0])
    out = _extract_into_tensor(diffusion.alphas_cumprod, t, SHAPE)
    assert out.dtype == torch.float32 and out.shape == SHAPE
    assert out[0].unique().item() == torch.tensor(diffusion.alphas_cumprod[9]).float().item()
    assert out[1].unique().item() == torch.tensor(diffusion.alphas_cumprod[0]).float().item()
    assert torch.equal(_extract_into_tensor(torch.from_numpy(diffusion.betas), t, (2, 1)), out.new_tensor(diffusion.betas[[9, 0]]).view(2, 1))


def _renoise(diffusion, x_prev, t, z):
    """RePaint's jump back: x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) z."""
    beta = _extract_into_tensor(diffusion.betas, t, x_prev.shape)
    return torch.sqrt(1 - beta) * x_prev + torch.sqrt(beta) * z


def test_repaint_like_renoising_is_the_forward_process_of_the_respaced_chain(net):
    """Going back one step with the chain's betas lands on q(x_t | x_0): the same mean coefficient,
    and noise of the same variance, as ``q_sample`` at t (the respaced chain's arrays agree)."""
    _, diffusion = net
    x0 = torch.ones(SHAPE)
    for index in (1, 5, 9):
        t, prev = torch.full((2,), index), torch.full((2,), index - 1)
        zero = torch.zeros(SHAPE)
        mean = _renoise(diffusion, diffusion.q_sample(x0, prev, noise=zero), t, zero)
        torch.testing.assert_close(mean, diffusion.q_sample(x0, t, noise=zero), rtol=1e-6, atol=0)
        from_prev = _renoise(diffusion, diffusion.q_sample(zero, prev, noise=x0), t, zero)
        fresh = _renoise(diffusion, zero, t, x0)
        variance = from_prev**2 + fresh**2
        expected = _extract_into_tensor(1 - diffusion.alphas_cumprod, t, SHAPE)
        torch.testing.assert_close(variance, expected, rtol=1e-5, atol=0)


def test_repaint_like_loop_revisits_steps(net):
    """A RePaint schedule (a step down, re-noised back up, the step again) drives ``p_sample`` at
    revisited steps, pasting the known region in at each level; the network sees the original
    timesteps of every visit."""
    model, diffusion = net
    g = torch.Generator().manual_seed(7)
    known = torch.rand(SHAPE, generator=g) * 2 - 1
    mask = torch.ones(1, 1, 16, 16)
    mask[..., :, 8:] = 0  # right half unknown
    recording = Recording(model)
    y = torch.tensor([0, 9])
    x, index, visits = torch.randn(SHAPE, generator=g), diffusion.num_timesteps - 1, []
    while index >= 0:
        t = torch.full((2,), index)
        level = diffusion.q_sample(known, t, noise=torch.randn(SHAPE, generator=g))
        x = mask * level + (1 - mask) * x
        with torch.no_grad():
            x = diffusion.p_sample(recording, x, t, model_kwargs={"y": y}, step_noise=torch.randn(SHAPE, generator=g))["sample"]
        visits.append(index)
        if index % 3 == 0 and index > 0 and visits.count(index) == 1:
            x = _renoise(diffusion, x, t, torch.randn(SHAPE, generator=g))  # x_{t-1} back to x_t
        else:
            index -= 1
    assert visits == [9, 9, 8, 7, 6, 6, 5, 4, 3, 3, 2, 1, 0]
    assert [int(t[0]) for t in recording.t] == [diffusion.timestep_map[i] for i in visits]
    assert torch.isfinite(x).all()


class Oracle:
    """An epsilon-predicting 'model' that knows x_0: eps = (x_t - sqrt(abar) x_0) / sqrt(1 - abar),
    with abar of the *original* timestep it is given (a wrong timestep breaks it)."""

    def __init__(self, x0, steps=100):
        self.x0 = x0
        self.alphas_cumprod = torch.from_numpy(compat.get_named_beta_schedule("linear", steps)).neg().add(1).cumprod(0)

    def __call__(self, x, t, **kwargs):
        abar = self.alphas_cumprod[t].float().view(-1, 1, 1, 1)
        return (x - abar.sqrt() * self.x0) / (1 - abar).sqrt()


def test_diffpure_like_noise_then_partial_reverse_recovers_the_image():
    """DiffPure: noise the input to t* with ``q_sample``, then run the reverse chain from t* down."""
    diffusion = compat.create_gaussian_diffusion(steps=100, timestep_respacing="20")
    g = torch.Generator().manual_seed(8)
    x0 = (torch.rand(SHAPE, generator=g) * 2 - 1).clamp(-0.99, 0.99)
    oracle, t_star = Oracle(x0), 6
    x = diffusion.q_sample(x0, torch.full((2,), t_star), noise=torch.randn(SHAPE, generator=g))
    for index in reversed(range(t_star + 1)):
        with torch.no_grad():
            out = diffusion.p_sample(oracle, x, torch.full((2,), index), step_noise=torch.randn(SHAPE, generator=g))
        torch.testing.assert_close(out["pred_xstart"], x0, rtol=0, atol=1e-4)  # right timestep at every step
        x = out["sample"]
    torch.testing.assert_close(x, x0, rtol=0, atol=1e-4)
