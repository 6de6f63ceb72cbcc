"""Parity fixtures for the rest of the ADM family, produced by running each family's own code.

``tests/test_family_parity.py`` checks adm against these files. They are the outputs of
openai/improved-diffusion and openai/consistency_models themselves, run on CPU in float32 on tiny
networks with random weights; nothing of either codebase is copied into adm or into the fixtures.

Rerun (from the repository root; the reference checkouts live outside the repository):

    git clone https://github.com/openai/improved-diffusion /tmp/ref_iddpm
    git clone https://github.com/openai/consistency_models /tmp/ref_cm
    # or export a local mirror: git -C MIRROR archive HEAD | tar -x -C /tmp/ref_cm
    python scripts/family_fixtures.py --improved /tmp/ref_iddpm --cm /tmp/ref_cm \\
        [--improved-commit SHA --cm-commit SHA]   # recorded when the checkouts have no .git

and commit ``tests/fixtures/families/``. The run is deterministic (explicit generators, fixed
seeds; a second run writes the same tensors), takes a few seconds and needs only torch, numpy and
safetensors: the reference modules' heavy imports that play no part in what is recorded (mpi4py,
blobfile, piq's LPIPS, flash_attn, einops when absent) are stubbed in ``sys.modules`` here, at
generation time only. The one stub that computes something is flash_attn's ``FlashAttention``:
consistency_models' U-Net always attends through it, so it is given that library's documented
maths (softmax(q·kᵀ/√d)·v over a [B, S, 3, H, D] qkv tensor) in float32.

What is recorded (each case's JSON says it again, tensor by tensor):

* ``improved_16px``: improved-diffusion's ``UNetModel`` (16 px, 32 channels, one res block,
  attention at 16 and 8 px, 4 heads: its legacy head-first qkv order), learned Σ, the 4000-step
  cosine schedule with its defaults ``rescale_timesteps=True``, ``rescale_learned_sigmas=True``:
  the forward at rescaled (float) timesteps, ``p_mean_variance``, ``training_losses`` at given
  t / noise, ``p_sample_loop`` respaced to "10" and ``ddim_sample_loop`` ("ddim10", η 0 and 0.5)
  with every ``th.randn_like`` of the loops replaced by recorded tensors. improved's
  ``create_model`` only builds 32/64/256 px networks (the 32 px one has 1.7 M parameters); the
  network is built by its own ``UNetModel`` class at 16 px to keep the fixtures small, and its
  32 px channel_mult table is checked by the family manifests instead.
* ``cm_16px``: consistency_models' ``create_model_and_diffusion`` (16 px, 32 channels, attention
  at 16 and 8 px with 16 head channels, no scale-shift norm, resblock up/down, as its LSUN nets),
  weights saved in its own format (attention ``qkv`` / ``proj_out`` as 4-D 1×1 convolutions):
  the forward at 250·ln σ, ``KarrasDenoiser.denoise`` with ``distillation=False`` (EDM) and
  ``True`` (consistency boundary) at σ from σ_min = 0.002 to σ_max = 80, and ``karras_sample``
  with ``heun`` (40 steps without churn; 10 steps with churn limited by s_tmin / s_tmax),
  ``onestep`` and ``multistep`` (ts 0,2,5 of 6 and 0,22,39 of 40) through a recording generator.

Weights are initialised here (the references zero their output layers) and rounded to values
float8 (e4m3) holds exactly; they are stored as ``float8_e4m3fn`` (a quarter of float32's bytes:
all fixtures together stay under 1.5 MB) and are the exact float32 values the references ran with:
load them with ``.float()``. Keys and shapes are each reference's own ``state_dict()``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import subprocess
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import save_file

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "tests" / "fixtures" / "families"
SHAPE = (2, 3, 16, 16)
STORED_DTYPE = torch.float8_e4m3fn  # the weights' values and file dtype

IMPROVED_FLAGS = dict(
    image_size=16, num_channels=32, num_res_blocks=1, num_heads=4, num_heads_upsample=-1,
    attention_resolutions="16,8", dropout=0.0, learn_sigma=True, sigma_small=False, class_cond=False,
    diffusion_steps=4000, noise_schedule="cosine", use_kl=False, predict_xstart=False,
    rescale_timesteps=True, rescale_learned_sigmas=True, use_checkpoint=False, use_scale_shift_norm=True,
)
IMPROVED_CHANNEL_MULT = (1, 1)
# adm's flags for the same network and process (improved-diffusion's defaults come with --family).
IMPROVED_ADM_FLAGS = (
    "--family improved-diffusion --image_size 16 --num_channels 32 --num_res_blocks 1 --channel_mult 1,1 "
    "--attention_resolutions 16,8 --num_heads 4 --learn_sigma True --use_scale_shift_norm True "
    "--diffusion_steps 4000 --noise_schedule cosine"
)

CM_FLAGS = dict(
    image_size=16, class_cond=False, learn_sigma=False, num_channels=32, num_res_blocks=1, channel_mult="1,1",
    num_heads=4, num_head_channels=16, num_heads_upsample=-1, attention_resolutions="16,8", dropout=0.0,
    use_checkpoint=False, use_scale_shift_norm=False, resblock_updown=True, use_fp16=False,
    use_new_attention_order=False, weight_schedule="karras", sigma_min=0.002, sigma_max=80.0,
)
CM_ADM_FLAGS = (
    "--image_size 16 --num_channels 32 --num_res_blocks 1 --channel_mult 1,1 --attention_resolutions 16,8 "
    "--num_head_channels 16 --use_scale_shift_norm False --resblock_updown True --learn_sigma False "
    "--class_cond False --sigma_min 0.002 --sigma_max 80"
)
CM_DENOISE_SIGMAS = [0.002, 0.02, 0.5, 3.0, 20.0, 80.0]

TOLERANCE = {
    "forward": {"atol": 1e-5, "rule": "max |adm - reference| over the output, float32 on both sides"},
    "denoise": {"atol": 1e-5, "rule": "max |adm - reference| of x_0 estimates"},
    "loop": {"atol": 1e-4, "rule": "max |adm - reference| over a sampling loop's results"},
    "losses": {"rtol": 1e-4, "atol": 1e-6, "rule": "per-sample loss terms"},
}


# --------------------------------------------------------------------------------------------
# Stubs for imports that play no part in what is recorded.


def _flash_attention_class():
    class FlashAttention(torch.nn.Module):
        """flash_attn's FlashAttention maths on CPU: softmax(q·kᵀ/√d)·v, qkv [B, S, 3, H, D]."""

        def __init__(self, softmax_scale=None, attention_dropout=0.0, device=None, dtype=None):
            super().__init__()
            self.softmax_scale = softmax_scale

        def forward(self, qkv, key_padding_mask=None, causal=False, need_weights=False, **kwargs):
            assert key_padding_mask is None and not causal
            q, k, v = qkv.unbind(dim=2)
            scale = self.softmax_scale or q.shape[-1] ** -0.5
            weights = torch.softmax(torch.einsum("bshd,bthd->bhst", q, k) * scale, dim=-1)
            return torch.einsum("bhst,bthd->bshd", weights, v), None

    return FlashAttention


def _rearrange(tensor, pattern, **axes):
    """The two einops patterns consistency_models' attention uses (when einops is absent)."""
    if pattern == "b (three h d) s -> b s three h d":
        b, width, s = tensor.shape
        three, h = axes["three"], axes["h"]
        return tensor.reshape(b, three, h, width // (three * h), s).permute(0, 4, 1, 2, 3)
    if pattern == "b s h d -> b (h d) s":
        b, s, h, d = tensor.shape
        return tensor.permute(0, 2, 3, 1).reshape(b, h * d, s)
    raise NotImplementedError(f"einops stub: pattern {pattern!r}")


def install_stubs() -> None:
    def module(name: str, **attrs) -> types.ModuleType:
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        sys.modules[name] = mod
        return mod

    class _Comm:
        def Get_rank(self):
            return 0

        def Get_size(self):
            return 1

    class _LPIPS:  # piq.LPIPS: built by KarrasDenoiser for its LPIPS loss, never called here
        def __init__(self, *args, **kwargs):
            pass

    module("mpi4py", MPI=types.SimpleNamespace(COMM_WORLD=_Comm()))
    sys.modules["mpi4py.MPI"] = sys.modules["mpi4py"].MPI
    module("blobfile")
    module("piq", LPIPS=_LPIPS)
    flash = module("flash_attn")
    flash.flash_attention = module("flash_attn.flash_attention", FlashAttention=_flash_attention_class())
    try:
        import einops  # noqa: F401
    except ImportError:
        module("einops", rearrange=_rearrange)


# --------------------------------------------------------------------------------------------
# Weights, noise and bookkeeping.


def randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights (the references zero-initialise output layers), rounded to float8 values.

    Modules in ``named_modules`` order, each one's own parameters: conv/linear weights
    N(0,1)/√fan_in, biases 0.05·N(0,1), norm weights 1 + 0.1·N(0,1), norm biases 0.05·N(0,1),
    embeddings 0.5·N(0,1).
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            for name, p in module.named_parameters(recurse=False):
                z = torch.randn(p.shape, generator=g, dtype=torch.float64)
                if isinstance(module, torch.nn.GroupNorm):
                    value = 1 + 0.1 * z if name == "weight" else 0.05 * z
                elif isinstance(module, torch.nn.Embedding):
                    value = 0.5 * z
                elif name == "bias":
                    value = 0.05 * z
                else:
                    value = z / math.sqrt(p[0].numel())
                p.copy_(value.to(STORED_DTYPE).to(p.dtype))
    return model.eval()


def normal(g: torch.Generator, *shape) -> torch.Tensor:
    return torch.randn(shape, generator=g, dtype=torch.float32)


@contextlib.contextmanager
def replayed_randn_like(noises: list[torch.Tensor]):
    """``torch.randn_like`` (the improved loops' ``th.randn_like``) returns ``noises`` in order."""
    real = torch.randn_like
    calls = iter(noises)

    def fake(x, *args, **kwargs):
        z = next(calls)
        assert z.shape == x.shape, (z.shape, x.shape)
        return z.clone()

    torch.randn_like = fake
    try:
        yield
    finally:
        torch.randn_like = real
    assert next(calls, None) is None, "not every recorded noise tensor was used"


class RecordingGenerator:
    """consistency_models' ``generator`` protocol: every draw comes from one seeded
    ``torch.Generator`` and is recorded in call order (x_T's z first, then each step's noise)."""

    def __init__(self, seed: int):
        self.g = torch.Generator().manual_seed(seed)
        self.draws: list[torch.Tensor] = []

    def randn(self, *shape, dtype=torch.float32, device="cpu"):
        z = torch.randn(shape, generator=self.g, dtype=dtype)
        self.draws.append(z.clone())
        return z.to(device)

    def randn_like(self, x):
        return self.randn(*x.shape, dtype=x.dtype, device=x.device)


class Recording:
    """The network, recording the time input of every call."""

    def __init__(self, model: torch.nn.Module):
        self.model, self.times = model, []

    def __call__(self, x, t, **kwargs):
        self.times.append(t.clone())
        return self.model(x, t, **kwargs)


class Case:
    """One case: its JSON description and its tensors."""

    def __init__(self, name: str, kind: str, description: str, **meta):
        self.name, self.tensors, self.meta = name, {}, {"name": name, "kind": kind, "description": description, **meta}
        self.meta.setdefault("tensors", {})

    def add(self, key: str, tensor: torch.Tensor, role: str, meaning: str) -> torch.Tensor:
        tensor = tensor.detach().cpu().clone().contiguous()
        self.tensors[key] = tensor
        self.meta["tensors"][key] = {"role": role, "dtype": str(tensor.dtype).removeprefix("torch."),
                                     "shape": list(tensor.shape), "meaning": meaning}
        return tensor


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def commit_of(checkout: Path, given: str | None) -> str:
    if given:
        return given
    try:
        return subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (pass --improved-commit / --cm-commit)"


# --------------------------------------------------------------------------------------------
# improved-diffusion


def improved_cases(ref, weights_file: str) -> tuple[torch.nn.Module, list[Case]]:
    script_util, unet = ref.script_util, ref.unet
    f = IMPROVED_FLAGS
    constructor = dict(
        in_channels=3, model_channels=f["num_channels"], out_channels=6 if f["learn_sigma"] else 3,
        num_res_blocks=f["num_res_blocks"],
        attention_resolutions=tuple(f["image_size"] // int(r) for r in f["attention_resolutions"].split(",")),
        dropout=f["dropout"], channel_mult=IMPROVED_CHANNEL_MULT, num_classes=None, use_checkpoint=False,
        num_heads=f["num_heads"], num_heads_upsample=f["num_heads_upsample"],
        use_scale_shift_norm=f["use_scale_shift_norm"],
    )
    model = randomize(unet.UNetModel(**constructor), seed=2101)

    def diffusion(respacing: str):
        keys = ("learn_sigma", "sigma_small", "noise_schedule", "use_kl", "predict_xstart",
                "rescale_timesteps", "rescale_learned_sigmas")
        return script_util.create_gaussian_diffusion(
            steps=f["diffusion_steps"], timestep_respacing=respacing, **{k: f[k] for k in keys})

    common = dict(network="improved_16px", weights=weights_file, reference_flags=f,
                  channel_mult=list(IMPROVED_CHANNEL_MULT), adm_flags=IMPROVED_ADM_FLAGS,
                  constructor={"class": "improved_diffusion.unet.UNetModel",
                               "kwargs": {**constructor, "attention_resolutions": list(constructor["attention_resolutions"]),
                                          "channel_mult": list(constructor["channel_mult"])}})
    g = torch.Generator().manual_seed(2102)
    cases = []

    # The network at the timesteps the full 4000-step process gives it: t·1000/4000 as float.
    full = diffusion("")
    case = Case("improved_forward", "forward", "improved-diffusion UNetModel forward at rescaled (float) timesteps "
                "(rescale_timesteps=True: the net sees t * 1000 / 4000)", **common,
                tolerance=TOLERANCE["forward"])
    x = case.add("x", normal(g, 4, 3, 16, 16), "input", "network input")
    t = case.add("t", torch.tensor([0, 7, 1500, 3999]), "input", "chain timesteps of the 4000-step process")
    recording = Recording(model)
    with torch.no_grad():  # the process's own model wrapper turns t into what the network is told
        output = full._wrap_model(recording)(x, t)
    case.add("t_seen_by_model", recording.times[0], "output", "what the network receives: t * 1000 / 4000 (float32)")
    case.add("output", output, "output", "model(x, t_seen_by_model): ε (3 channels) and the variance values (3)")
    cases.append(case)

    # p_mean_variance and training_losses on the full process.
    case = Case("improved_process", "process", "GaussianDiffusion(4000 cosine, learned range, rescale_timesteps, "
                "rescale_learned_sigmas) p_mean_variance and training_losses with the network", **common,
                tolerance={"denoise": TOLERANCE["denoise"], "losses": TOLERANCE["losses"]})
    x_start = case.add("x_start", normal(g, 4, 3, 16, 16).clamp(-1, 1), "input", "clean images")
    noise = case.add("noise", normal(g, 4, 3, 16, 16), "input", "ε of q_sample / training_losses")
    t = case.add("t", torch.tensor([0, 7, 1500, 3000]), "input", "timesteps (one per sample)")
    x_t = case.add("x_t", full.q_sample(x_start, t, noise=noise), "output", "q_sample(x_start, t, noise)")
    with torch.no_grad():
        for clip in (True, False):
            out = full.p_mean_variance(model, x_t, t, clip_denoised=clip)
            tag = "clip" if clip else "noclip"
            for key in ("mean", "variance", "log_variance", "pred_xstart") if clip else ("mean", "pred_xstart"):
                case.add(f"pmv_{tag}/{key}", out[key], "output", f"p_mean_variance(model, x_t, t, clip_denoised={clip})['{key}']")
        losses = full.training_losses(model, x_start, t, noise=noise)
    for key, value in losses.items():
        case.add(f"training_losses/{key}", value, "output",
                 f"training_losses(model, x_start, t, noise=noise)['{key}'] (RESCALED_MSE: vb x 4000/1000)")
    cases.append(case)

    # Loops: every th.randn_like the loop draws is replaced by a recorded tensor.
    loops = [("p_sample", "10", None), ("ddim_eta0", "ddim10", 0.0), ("ddim_eta0.5", "ddim10", 0.5)]
    for name, respacing, eta in loops:
        spaced = diffusion(respacing)
        steps = spaced.num_timesteps
        what = "p_sample_loop" if eta is None else f"ddim_sample_loop(eta={eta})"
        case = Case(f"improved_{name}", "loop", f"{what} respaced {respacing!r} with recorded noise", **common,
                    respacing=respacing, eta=eta, clip_denoised=True, tolerance=TOLERANCE["loop"],
                    timestep_map=list(map(int, spaced.timestep_map)))
        x_T = case.add("noise", normal(g, *SHAPE), "input", "x_T (passed as noise=)")
        step_noise = normal(g, steps, *SHAPE)
        if eta != 0.0:  # DDIM with eta 0 draws th.randn_like too, but multiplies it by 0
            case.add("step_noise", step_noise, "input",
                     "the th.randn_like of each step, in loop order (t = T-1 ... 0; unused at t = 0)")
        recording = Recording(model)
        progressive = spaced.p_sample_loop_progressive if eta is None else spaced.ddim_sample_loop_progressive
        kwargs = {} if eta is None else {"eta": eta}
        with replayed_randn_like(list(step_noise)):
            outs = list(progressive(recording, SHAPE, noise=x_T, clip_denoised=True, device="cpu", **kwargs))
        if eta is None:  # the stochastic chain's trajectory, to see where a difference starts
            case.add("samples", torch.stack([o["sample"] for o in outs]), "output", "x after each step, in loop order")
        case.add("final", outs[-1]["sample"], "output", f"what {what} returns")
        case.add("t_seen_by_model", torch.stack(recording.times), "output",
                 "timesteps the network received at each step: timestep_map[t] * 1000 / 4000 (float32)")
        cases.append(case)
    return model, cases


# --------------------------------------------------------------------------------------------
# consistency_models


def cm_cases(ref, weights_file: str) -> tuple[torch.nn.Module, list[Case]]:
    script_util, kd = ref.script_util, ref.karras_diffusion
    f = CM_FLAGS
    model, edm = script_util.create_model_and_diffusion(**f, distillation=False)
    _, consistency = script_util.create_model_and_diffusion(**f, distillation=True)
    randomize(model, seed=2201)
    diffusions = {"edm": edm, "consistency_distillation": consistency}
    # The network does not depend on the mode; the forward case is read as the EDM teacher's.
    common = dict(network="cm_16px", weights=weights_file, reference_flags=f, adm_flags=CM_ADM_FLAGS,
                  builder="cm.script_util.create_model_and_diffusion", training_mode="edm")
    g = torch.Generator().manual_seed(2202)
    cases = []

    case = Case("cm_forward", "forward", "consistency_models UNetModel forward at network time 250 ln(sigma) "
                "(float32, as KarrasDenoiser.denoise computes it)", **common, tolerance=TOLERANCE["forward"])
    sigmas = torch.tensor(CM_DENOISE_SIGMAS)
    x = case.add("x", normal(g, len(sigmas), 3, 16, 16), "input", "network input")
    time = case.add("t", 1000 * 0.25 * torch.log(sigmas + 1e-44), "input", "network time 250 ln(sigma) (float32)")
    with torch.no_grad():
        case.add("output", model(x, time), "output", "model(x, t)")
    cases.append(case)

    x0 = normal(g, len(sigmas), 3, 16, 16).clamp(-1, 1)
    eps = normal(g, len(sigmas), 3, 16, 16)
    for mode, diffusion in diffusions.items():
        case = Case(f"cm_denoise_{mode}", "denoise",
                    f"KarrasDenoiser(distillation={diffusion.distillation}).denoise: "
                    + ("EDM preconditioning" if mode == "edm" else "the consistency boundary condition"),
                    **{**common, "training_mode": mode}, sigma_data=diffusion.sigma_data, sigmas=CM_DENOISE_SIGMAS,
                    tolerance=TOLERANCE["denoise"])
        case.add("sigmas", sigmas, "input", "noise level of each sample (float32)")
        x_t = case.add("x_t", x0 + eps * sigmas.view(-1, 1, 1, 1), "input", "x_start + sigma * eps (variance exploding)")
        with torch.no_grad():
            raw, denoised = diffusion.denoise(model, x_t, sigmas)
        case.add("model_output", raw, "output", "denoise(...)[0]: the raw network output")
        case.add("denoised", denoised, "output", "denoise(...)[1]: c_skip * x_t + c_out * output (not clamped)")
        cases.append(case)

    # karras_sample with a recording generator; clip_denoised=True as scripts/image_sample.py.
    runs = [
        ("heun40", "edm", dict(sampler="heun", steps=40)),
        ("heun10_churn", "edm", dict(sampler="heun", steps=10, s_churn=4.0, s_tmin=0.1, s_tmax=20.0)),
        ("onestep", "consistency_distillation", dict(sampler="onestep", steps=40)),
        ("multistep_0_2_5_of_6", "consistency_distillation", dict(sampler="multistep", steps=6, ts=(0, 2, 5))),
        ("multistep_0_22_39_of_40", "consistency_distillation", dict(sampler="multistep", steps=40, ts=(0, 22, 39))),
    ]
    for seed, (name, mode, kwargs) in enumerate(runs, start=2210):
        diffusion = diffusions[mode]
        generator = RecordingGenerator(seed)
        steps_seen: list[dict] = []
        record = {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()}
        case = Case(f"cm_{name}", "loop", f"karras_sample(..., {', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) "
                    f"with a recording generator ({mode} model)", **{**common, "training_mode": mode},
                    karras_sample={**record, "clip_denoised": True, "sigma_min": diffusion.sigma_min,
                                   "sigma_max": diffusion.sigma_max, "rho": diffusion.rho},
                    tolerance=TOLERANCE["loop"])
        recording = Recording(model)
        with torch.no_grad():
            final = kd.karras_sample(diffusion, recording, SHAPE, clip_denoised=True, model_kwargs={}, device="cpu",
                                     generator=generator, sigma_min=diffusion.sigma_min, sigma_max=diffusion.sigma_max,
                                     callback=steps_seen.append, **kwargs)
        case.add("t_seen_by_model", torch.stack(recording.times), "output",
                 "the network time 250 ln(sigma) of every evaluation, in call order [evaluations, B] (float32)")
        case.add("z", generator.draws[0], "input", "generator.randn(*shape): x_T = z * sigma_max")
        case.add("x_T", generator.draws[0] * diffusion.sigma_max, "input", "x_T as karras_sample computes it")
        step_draws = generator.draws[1:]
        if kwargs["sampler"] == "heun":
            case.meta["levels"] = kd.get_sigmas_karras(kwargs["steps"], diffusion.sigma_min, diffusion.sigma_max).tolist()
            case.meta["churned_steps"] = [i for i, d in enumerate(steps_seen) if float(d["sigma_hat"]) != float(d["sigma"])]
        if kwargs.get("s_churn", 0.0) == 0.0 and kwargs["sampler"] == "heun":
            case.meta["unused_draws"] = f"{len(step_draws)} randn_like draws (one a step), never added without churn: not stored"
        elif step_draws:
            case.add("step_noise", torch.stack(step_draws), "input",
                     "generator.randn_like(x) in call order: heun draws one every step and adds it where it "
                     "churns; multistep one for each listed index but the last, scaled by "
                     "sqrt(next_t^2 - sigma_min^2) (0 when the next index is the grid's last)")
        case.add("final", final, "output", "what karras_sample returns (clamped to [-1, 1])")
        cases.append(case)
    return model, cases


# --------------------------------------------------------------------------------------------


def import_reference(path: Path, package: str, modules: list[str]) -> types.SimpleNamespace:
    if not (path / package).is_dir():
        raise SystemExit(f"{path} is not a checkout of the reference: no {package}/ in it")
    sys.path.insert(0, str(path))
    try:
        import importlib

        return types.SimpleNamespace(**{m: importlib.import_module(f"{package}.{m}") for m in modules})
    finally:
        sys.path.remove(str(path))


def write(out: Path, cases: list[Case], networks: dict[str, torch.nn.Module], references: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    index = {"references": references, "cases": {}, "networks": {}}
    for name, model in networks.items():
        path = out / f"{name}.safetensors"
        state = {k: v.detach().to(STORED_DTYPE).contiguous() for k, v in model.state_dict().items()}
        assert all(torch.equal(state[k].float(), v.float()) for k, v in model.state_dict().items())
        save_file(state, str(path), metadata={"format": "pt", "note": "float8 values; the reference ran them as float32"})
        index["networks"][name] = {"file": path.name, "sha256": sha256(path),
                                   "num_params": sum(v.numel() for v in state.values()),
                                   "state_dict": [[k, list(v.shape)] for k, v in state.items()]}
    for case in cases:
        io = out / f"{case.name}.io.safetensors"
        save_file(case.tensors, str(io))
        meta = {**case.meta, "files": {"io": io.name, "weights": case.meta["weights"]}, "reference": references}
        (out / f"{case.name}.json").write_text(json.dumps(meta, indent=1, sort_keys=False) + "\n")
        index["cases"][case.name] = {"kind": case.meta["kind"], "io_sha256": sha256(io)}
    (out / "index.json").write_text(json.dumps(index, indent=1) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--improved", type=Path, required=True, help="checkout of openai/improved-diffusion")
    parser.add_argument("--cm", type=Path, required=True, help="checkout of openai/consistency_models")
    parser.add_argument("--improved-commit", help="its commit, when the checkout has no .git")
    parser.add_argument("--cm-commit", help="its commit, when the checkout has no .git")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    torch.set_num_threads(1)  # one thread: the same float32 reductions on every machine
    install_stubs()
    improved = import_reference(args.improved, "improved_diffusion", ["script_util", "unet", "gaussian_diffusion"])
    cm = import_reference(args.cm, "cm", ["script_util", "karras_diffusion", "unet"])
    references = {
        "improved-diffusion": {
            "repo": "openai/improved-diffusion", "commit": commit_of(args.improved, args.improved_commit),
            "sha256": {p: sha256(args.improved / p) for p in
                       ("improved_diffusion/unet.py", "improved_diffusion/gaussian_diffusion.py", "improved_diffusion/respace.py")},
        },
        "consistency_models": {
            "repo": "openai/consistency_models", "commit": commit_of(args.cm, args.cm_commit),
            "sha256": {p: sha256(args.cm / p) for p in ("cm/unet.py", "cm/karras_diffusion.py", "cm/script_util.py")},
        },
        "torch": torch.__version__,
        "generator": "scripts/family_fixtures.py",
    }
    improved_net, improved_list = improved_cases(improved, "improved_16px.safetensors")
    cm_net, cm_list = cm_cases(cm, "cm_16px.safetensors")
    write(args.out, improved_list + cm_list, {"improved_16px": improved_net, "cm_16px": cm_net}, references)
    total = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"wrote {len(improved_list) + len(cm_list)} cases to {args.out} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
