"""Seconds and network evaluations per image for each ADM family's recipe on the ImageNet-64 network.

Three networks of the same 296M-parameter ImageNet-64 architecture, each with random weights and
its release's flags: guided-diffusion's ADM-64 (learned Σ, 6 output channels), consistency_models'
EDM teacher (``edm_imagenet64_ema``) and its consistency-distilled student (``cd_imagenet64_lpips``).
Each is written once to a temporary checkpoint and sampled through the public API, as
``adm sample --model-flags ... --model-path ...`` does:
``adm.sample(source=adm.ModelSource(model_flags=..., model_path=...), sampler=..., steps=..., out=...)``.

The recipes are each family's published one: ADM DDPM-250, ADM dpm++2m at 15 and 25 evaluations,
the EDM teacher's Heun on a 40-level Karras grid (79 evaluations), consistency sampling in one step
and in two (``--steps 0,22,39``). Their evaluations per image come from the sampling plan
(``SamplingPlan.evaluations``) and are checked against the sidecar of every run. A recipe with at
most ``--full-up-to`` evaluations is run end to end; a longer one is timed on a short run of the
same sampler on the same network (2 or 3 evaluations) and reported as evaluations × seconds per
evaluation, labelled as such (DDPM-250 of this network takes minutes per image on a 2-core CPU).

Timing is the sampling job itself: from the job's start (after the checkpoint is loaded) to its
last batch, read from the progress callback; the model load, npz and PNG writes are outside it.
Runs are interleaved over ``--repeats`` rounds after a warm-up round at the smallest batch, and
the median is kept, so a shared machine's slow phases hit every network alike.

    nice -n 10 python benchmarks/families.py --update-docs                            # CPU, ~7 minutes
    python benchmarks/families.py --device cuda --batch-sizes 1,64 --full-up-to 250 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from adm.core.threads import prepare_environment, set_threads

prepare_environment()  # as the adm command does, before torch loads

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

DOCS = Path(__file__).resolve().parents[1] / "docs"
START, END = "<!-- families:start -->", "<!-- families:end -->"

# guided-diffusion README, 64x64_diffusion.pt: MODEL_FLAGS + DIFFUSION_FLAGS.
ADM64 = ("--attention_resolutions 32,16,8 --class_cond True --diffusion_steps 1000 --dropout 0.1 --image_size 64 "
         "--learn_sigma True --noise_schedule cosine --num_channels 192 --num_head_channels 64 --num_res_blocks 3 "
         "--resblock_updown True --use_new_attention_order True --use_fp16 True --use_scale_shift_norm True")
# consistency_models scripts/launch.sh (the manifests' cli_flags of edm_imagenet64_ema and cd_imagenet64_lpips).
_CM64 = ("--attention_resolutions 32,16,8 --class_cond True --use_scale_shift_norm True --image_size 64 "
         "--num_channels 192 --num_head_channels 64 --num_res_blocks 3 --resblock_updown True --use_fp16 True "
         "--sigma_max 80 --sigma_min 0.002")
EDM64 = f"--training_mode edm {_CM64} --dropout 0.1 --weight_schedule karras"
CD64 = f"--training_mode consistency_distillation {_CM64} --dropout 0.0 --weight_schedule uniform"

NETWORKS = {  # key: (what, flags)
    "adm64": ("ADM-64 (guided-diffusion 64x64_diffusion.pt)", ADM64),
    "edm64": ("EDM teacher (consistency_models edm_imagenet64_ema.pt)", EDM64),
    "cd64": ("CD student (consistency_models cd_imagenet64_lpips.pt)", CD64),
}


@dataclass(frozen=True)
class Run:
    """One ``adm.sample`` call's sampler choice on one network."""

    network: str
    sampler: str
    steps: str
    options: tuple[tuple[str, object], ...] = ()

    def label(self) -> str:
        opts = "".join(f" {k}={v}" for k, v in self.options)
        return f"{self.network} {self.sampler} --steps {self.steps}{opts}"


@dataclass(frozen=True)
class Recipe:
    label: str
    run: Run
    probe: Run  # a short run of the same sampler, timed when the recipe itself is too long to run
    fid: str  # published ImageNet-64 FID-50k of this recipe on the released checkpoint


RECIPES = [
    Recipe("ADM-64, DDPM 250 (the paper's)", Run("adm64", "ddpm", "250"), Run("adm64", "ddpm", "2"),
           "2.07 [ADM, CM]"),
    Recipe("ADM-64, dpm++2m 25", Run("adm64", "dpm++2m", "25"), Run("adm64", "dpm++2m", "2"), "–"),
    Recipe("ADM-64, dpm++2m 15", Run("adm64", "dpm++2m", "15"), Run("adm64", "dpm++2m", "2"), "–"),
    Recipe("EDM teacher, Heun 40 levels, churn 0 (the paper's)", Run("edm64", "heun", "79", (("s_churn", 0.0),)),
           Run("edm64", "heun", "3", (("s_churn", 0.0),)), "2.44 [CM]"),
    Recipe("CD, 1 step (`cm --steps 1`)", Run("cd64", "cm", "1"), Run("cd64", "cm", "1"), "6.20 [CM]"),
    Recipe("CD, 2 steps (`cm --steps 0,22,39`)", Run("cd64", "cm", "0,22,39"), Run("cd64", "cm", "0,22,39"),
           "4.70 [CM]"),
]


@dataclass
class Measured:
    sampling: list[float] = field(default_factory=list)  # seconds of the sampling job
    wall: list[float] = field(default_factory=list)  # seconds of the whole call (load, sampling, writes)
    evaluations: int | None = None  # from the run's sidecar
    precision: str | None = None


def plan_evaluations(run: Run) -> tuple[int, list[float]]:
    """Network evaluations per image and the σ grid that the sampling plan gives ``run``."""
    from adm.sampling.settings import SamplerSettings
    from adm.spec.factory import noise_schedule
    from adm.spec.flags import parse_model_flags

    flags = parse_model_flags(NETWORKS[run.network][1])
    plan = SamplerSettings.make(sampler=run.sampler, steps=run.steps, options=dict(run.options)).plan(noise_schedule(flags))
    return plan.evaluations, [float(s) for s in plan.sigmas]


def write_checkpoint(key: str, folder: Path, seed: int) -> tuple[Path, int]:
    """The network of ``key`` with random weights (the builder's init; its zeroed output layers get
    small noise so the samples are not trivially the input), saved once."""
    from adm.hub.checkpoints import save_state_dict
    from adm.spec.factory import build_model
    from adm.spec.flags import parse_model_flags

    torch.manual_seed(seed)
    net = build_model(parse_model_flags(NETWORKS[key][1]))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if p.ndim > 1 and not p.any():
                p.copy_(torch.randn(p.shape, generator=generator) * 1e-3)
    path = folder / f"{key}.pt"
    count = sum(p.numel() for p in net.parameters())
    save_state_dict(net.state_dict(), path)
    del net
    return path, count


def sample_once(run: Run, path: Path, batch: int, device: str, precision: str | None, out: Path) -> tuple[float, float, dict]:
    """(sampling seconds, wall seconds, sidecar) of one batch of ``batch`` images."""
    import adm

    marks: list[tuple[float, float]] = []  # (time, images done) from the job's progress reports
    start = time.perf_counter()
    adm.sample(source=adm.ModelSource(model_flags=NETWORKS[run.network][1], model_path=path), sampler=run.sampler,
               steps=run.steps, sampler_options=dict(run.options), num_samples=batch, batch_size=batch, seed=0,
               device=device, precision=precision, out=out, on_progress=lambda p: marks.append((time.perf_counter(), p.completed)))
    wall = time.perf_counter() - start
    begun = next(t for t, done in marks if done == 0)
    finished = next(t for t, done in marks if done >= batch)
    return finished - begun, wall, json.loads(out.with_suffix(".json").read_text())


def measure(runs: list[Run], paths: dict[str, Path], batch_sizes: list[int], repeats: int, device: str,
            precision: str | None, folder: Path) -> dict[tuple[Run, int], Measured]:
    results = {(run, b): Measured() for run in runs for b in batch_sizes}
    calls = 0
    for round_ in range(repeats + 1):  # round 0 warms up, at the smallest batch only
        for b in batch_sizes if round_ else batch_sizes[:1]:
            for run in runs:
                calls += 1
                sampling, wall, sidecar = sample_once(run, paths[run.network], b, device, precision,
                                                      folder / f"s{calls}.npz")
                m = results[run, b]
                m.evaluations, m.precision = sidecar["evaluations"], sidecar["key"]["precision"]
                if round_:
                    m.sampling.append(sampling)
                    m.wall.append(wall)
                print(f"round {round_} batch {b} {run.label()}: {sampling:.2f} s sampling, {wall:.2f} s call",
                      file=sys.stderr, flush=True)
    return results


def report(results, batch_sizes: list[int], full_up_to: int, repeats: int, device: str, params: dict[str, int],
           elapsed: float, load: tuple[float, float]) -> str:
    def per_eval(run: Run, b: int, pick=statistics.median) -> float:
        m = results[run, b]
        return pick(m.sampling) / (m.evaluations * b)

    bs = " / ".join(str(b) for b in batch_sizes)
    precision = next(iter(results.values())).precision
    lines = [
        f"Machine: {platform.machine()}, {torch.get_num_threads()} thread(s), torch {torch.__version__}, device {device}, "
        f"precision {precision} (adm's default here). Random weights; median of {repeats} interleaved rounds after "
        f"a warm-up; the whole benchmark took {elapsed / 60:.1f} min; 1-minute load average {load[0]:.1f} at the "
        f"start, {load[1]:.1f} at the end (its own threads count in it; the CPU is shared).",
        "",
        f"| recipe | sampler, --steps | evaluations / image (plan) | seconds / image, batch {bs} | how | "
        "published FID (ImageNet-64, 50k) |",
        "|---|---|---|---|---|---|",
    ]
    for recipe in RECIPES:
        evaluations, _ = plan_evaluations(recipe.run)
        full = evaluations <= full_up_to
        run = recipe.run if full else recipe.probe
        if full:
            seconds = [statistics.median(results[run, b].sampling) / b for b in batch_sizes]
            walls = " / ".join(f"{statistics.median(results[run, b].wall):.1f}" for b in batch_sizes)
            how = f"end to end (the whole call, checkpoint load and writes included: {walls} s)"
        else:
            seconds = [evaluations * per_eval(run, b) for b in batch_sizes]
            how = f"{evaluations} × s/evaluation of `{run.sampler} --steps {run.steps}`"
        opts = "".join(f", {k} {v:g}" for k, v in recipe.run.options)
        cells = " / ".join(f"{s:.2f}" if s < 100 else f"{s:.0f}" for s in seconds)
        lines.append(f"| {recipe.label} | {recipe.run.sampler} {recipe.run.steps}{opts} | {evaluations} | {cells} | "
                     f"{how} | {recipe.fid} |")
    lines += [
        "",
        f"| network | parameters | timed with | evaluations / run | seconds / evaluation / image, batch {bs} "
        "(median, range over rounds) |",
        "|---|---|---|---|---|",
    ]
    seen = set()
    for recipe in RECIPES:
        for run in (recipe.run, recipe.probe):
            if (run, batch_sizes[0]) not in results or run in seen:
                continue
            seen.add(run)
            cells = " / ".join(f"{per_eval(run, b):.2f} ({per_eval(run, b, min):.2f}–{per_eval(run, b, max):.2f})"
                               for b in batch_sizes)
            lines.append(f"| {NETWORKS[run.network][0]} | {params[run.network] / 1e6:.1f}M | `{run.sampler} --steps "
                         f"{run.steps}` | {results[run, batch_sizes[0]].evaluations} | {cells} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", default="1,4")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full-up-to", type=int, default=2,
                        help="run recipes of at most this many evaluations end to end (the others: timed on a probe)")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default=None, help="unset: adm's default")
    parser.add_argument("--threads", type=int, default=None, help="unset: adm's default (ADM_THREADS or torch's)")
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args()
    set_threads(args.threads)
    batch_sizes = sorted(int(b) for b in args.batch_sizes.split(","))
    began, load_before = time.perf_counter(), os.getloadavg()[0]
    for recipe in RECIPES:  # the plan's evaluations, and the Heun recipe's grid: EDM's 40 levels 80 → 0.002, then 0
        evaluations, sigmas = plan_evaluations(recipe.run)
        print(f"{recipe.label}: {evaluations} evaluations, grid {sigmas[0]:g} .. {sigmas[-2]:g} ({len(sigmas) - 1} levels)",
              file=sys.stderr)
    runs = list(dict.fromkeys(r.run if plan_evaluations(r.run)[0] <= args.full_up_to else r.probe for r in RECIPES))
    with tempfile.TemporaryDirectory(prefix="adm-families-") as tmp:
        folder = Path(tmp)
        paths, params = {}, {}
        for key in dict.fromkeys(run.network for run in runs):
            paths[key], params[key] = write_checkpoint(key, folder, seed=0)
        results = measure(runs, paths, batch_sizes, args.repeats, args.device, args.precision, folder)
    for recipe in RECIPES:  # the sidecars agree with the plans
        for run in (recipe.run, recipe.probe):
            if (run, batch_sizes[0]) in results:
                recorded = results[run, batch_sizes[0]].evaluations
                assert recorded == plan_evaluations(run)[0], (run, recorded)
    text = report(results, batch_sizes, args.full_up_to, args.repeats, args.device, params, time.perf_counter() - began,
                  (load_before, os.getloadavg()[0]))
    print(text)
    if args.update_docs:
        from report import replace_block

        replace_block(DOCS / "performance.md", START, END, text)


if __name__ == "__main__":
    main()
