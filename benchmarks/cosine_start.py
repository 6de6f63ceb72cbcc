"""Where sampling starts on a cosine schedule, measured on the shipped `digits` model.

adm's grids start at the schedule's start (``NoiseSchedule.start_timestep``: the highest timestep
with λ ≥ −5.1, t = 995 of the 1000-step cosine schedule); before, they started at its last
timestep, t = 999, where σ = 20291. Every table compares the two starts on the same seeds
(``--samples`` class-balanced samples, seed 1), scored by the digits judge:

* ``start``: solvers with x̂₀ clipped and unclipped: max |x| of the final samples before they
  are quantised, the share of saturated pixels (uint8 0 or 255; the real digits have ~30%),
  digits-FD and judge accuracy;
* ``precision``: ``heun`` in float32 against the same run in float64 (network included), on a
  time-uniform and on its own Karras grid (clipped, 20 samples);
* ``ddim``: the original's guided DDIM, 25 steps, with the classifier everywhere (``0,1``), by
  default (not above the schedule's start), below t/T 0.9, and unguided;
* ``inversion``: ``adm edit --invert --strength 1 --scale 0`` on held-out digits, with the
  default steps and with ``ddim25``: mean and max reconstruction error (of 255).

Results are cached per configuration (JSON lines). ``--update-docs`` writes the tables into
docs/sampling.md and docs/edit.md (between markers).

    python benchmarks/cosine_start.py --samples 300 --update-docs   # ~15 minutes on one CPU core
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sampler_quality import config_key, judged_session, measure  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs"
STARTS = ("whole", "schedule")  # t = T − 1 (before) and the schedule's start (now)
START_NAMES = {"whole": "t = 999 (before)", "schedule": "t = 995 (now)"}
SOLVERS = [("dpm++2m", "20", None), ("dpm++2m", "20", "time"), ("heun", "25", None),
           ("dpm++2m-sde", "25", None)]
DDIM_INTERVALS = [[0.0, 1.0], None, [0.0, 0.9]]  # None: the default
BLOCKS = {"start": "cosine-start", "precision": "cosine-start-precision", "ddim": "guided-ddim"}


@contextlib.contextmanager
def whole_table():
    """Grids (and edits at strength 1) start at the schedule's last timestep, as adm did before."""
    from adm.diffusion.continuous import NoiseSchedule

    saved = NoiseSchedule.__dict__["start_timestep"]
    NoiseSchedule.start_timestep = property(lambda schedule: schedule.num_steps - 1)
    try:
        yield
    finally:
        NoiseSchedule.start_timestep = saved


def starting(start: str):
    return whole_table() if start == "whole" else contextlib.nullcontext()


def resolve_digits(**sampling):
    from adm.api.options import SamplingOptions
    from adm.api.setup import resolve
    from adm.api.sources import ModelSource
    from adm.presets import default_registry

    return resolve(ModelSource(preset="digits"), SamplingOptions(**sampling), default_registry(), upsampler=False,
                   device="cpu", download=False, dist=None)


def sample_floats(config: dict, num_samples: int) -> tuple[torch.Tensor, np.ndarray, float]:
    """Final samples before quantisation (float, unclamped), their labels and seconds per image."""
    from adm.sampling.batches import sample_batch

    sampling = {k: config[k] for k in ("sampler", "steps", "spacing", "scale") if config.get(k) is not None}
    with starting(config["start"]):
        setup = resolve_digits(**sampling, clip_denoised=config["clip"])
        start = time.perf_counter()
        outs, labels = [], []
        for first in range(0, num_samples, 100):
            x, y = sample_batch(setup.networks(), setup.plan, range(first, min(num_samples, first + 100)), 1,
                                classes="balanced")
            outs.append(x)
            labels.append(y)
    return torch.cat(outs), torch.cat(labels).numpy(), (time.perf_counter() - start) / num_samples


def measure_start(config: dict, num_samples: int, judge) -> dict:
    from adm.data.pixels import to_uint8

    x, labels, seconds = sample_floats(config, num_samples)
    images = to_uint8(x)
    scores = judge.score(images, labels)
    return {"config": config, "num_samples": num_samples, "max_abs": float(x.abs().max()),
            "saturated": float(((images == 0) | (images == 255)).mean()), "digits_fd": scores.digits_fd,
            "accuracy": scores.accuracy, "seconds_per_image": seconds}


def start_configs() -> list[dict]:
    configs = [{"sampler": s, "steps": n, "spacing": spacing, "scale": 0.0, "clip": clip, "start": start}
               for s, n, spacing in SOLVERS for clip in (False, True) for start in STARTS]
    return configs + [{"sampler": "dpm++2m-sde", "steps": "25", "spacing": None, "scale": 1.0, "clip": True,
                       "start": start} for start in STARTS]


def measure_precision(config: dict, num_samples: int, _judge) -> dict:
    """heun in float32 against float64 (network and solver) from the same noise, clipped."""
    from adm.sampling.denoiser import Denoiser
    from adm.sampling.noise import PerSampleNoise

    count = 20
    with starting(config["start"]):
        setup = resolve_digits(sampler="heun", steps="25", spacing=config["spacing"], scale=0.0, clip_denoised=True)
        nets, plan = setup.networks(), setup.plan
        wide = copy.deepcopy(nets.model).double()
        labels = torch.arange(count) % 10
        x_T = PerSampleNoise.from_seeds(range(count)).randn((count, *nets.image_shape))

        def run(model, x):
            denoiser = Denoiser(model, nets.schedule, nets.adapter, {"y": labels})
            with torch.no_grad():
                return plan.spec(denoiser, x, plan.sigmas, noise=None, options=plan.options)

        narrow = run(nets.model, x_T)
        exact = run(lambda x, t, **kw: wide(x.double(), t.double(), **kw), x_T.double())
    error = (narrow.double() - exact).abs()
    return {"config": config, "num_samples": num_samples, "count": count, "max_error": float(error.max()),
            "mean_error": float(error.mean()), "sigma_max": float(plan.sigmas[0]), "sigma_next": float(plan.sigmas[1])}


def precision_configs() -> list[dict]:
    return [{"table": "precision", "spacing": spacing, "start": start} for spacing in ("time", None) for start in STARTS]


def ddim_configs() -> list[dict]:
    base = {"sampler": "ddim", "steps": "25", "scale": 1.0}
    return [{**base, **({"guidance_interval": iv} if iv is not None else {})} for iv in DDIM_INTERVALS] + [
        {**base, "scale": 0.0}]


def measure_inversion(config: dict, num_samples: int, _judge) -> dict:
    import adm
    from adm.data.digits import load_digits

    held = load_digits().split("heldout")
    count = min(num_samples, 50, len(held.images))
    path = Path(config["folder"]) / "heldout.npz"
    np.savez(path, arr_0=held.images[:count], arr_1=held.labels[:count])
    steps = {"steps": config["steps"]} if config["steps"] else {}
    with starting(config["start"]):
        out = adm.edit("digits", inputs=path, invert=True, strength=1.0, scale=0.0, num_samples=count, device="cpu",
                       **steps)
    error = np.abs(out.images.astype(int) - held.images[:count].astype(int))
    return {"config": {k: v for k, v in config.items() if k != "folder"}, "num_samples": num_samples, "count": count,
            "mean_error": float(error.mean()), "max_error": int(error.max())}


def inversion_configs() -> list[dict]:
    return [{"table": "inversion", "steps": steps, "start": start} for steps in (None, "ddim25") for start in STARTS]


def _name(config: dict) -> str:
    spacing = f", `--spacing {config['spacing']}`" if config.get("spacing") else ""
    return f"`{config['sampler']}` {config['steps']}{spacing}"


def start_table(records: dict[str, dict]) -> str:
    rows = ["| sampler | scale | x̂₀ | start | max \\|x\\| | saturated pixels | digits-FD | judge accuracy |",
            "|---|---|---|---|---|---|---|---|"]
    for config in start_configs():
        r = records.get(config_key(config))
        if r:
            rows.append(f"| {_name(config)} | {config['scale']:g} | {'clipped' if config['clip'] else 'unclipped'} | "
                        f"{START_NAMES[config['start']]} | {r['max_abs']:.3g} | {r['saturated']:.1%} | "
                        f"{r['digits_fd']:.1f} | {r['accuracy']:.3f} |")
    return "\n".join(rows)


def precision_table(records: dict[str, dict]) -> str:
    rows = ["| `heun` 25, clipped | start | first two levels σ | max \\|x₃₂ − x₆₄\\| | mean |", "|---|---|---|---|---|"]
    for config in precision_configs():
        r = records.get(config_key(config))
        if r:
            grid = f"`--spacing {config['spacing']}`" if config["spacing"] else "Karras (its default)"
            rows.append(f"| {grid} | {START_NAMES[config['start']]} | {r['sigma_max']:.4g} → {r['sigma_next']:.3g} | "
                        f"{r['max_error']:.2g} | {r['mean_error']:.2g} |")
    return "\n".join(rows)


def ddim_table(records: dict[str, dict]) -> str:
    rows = ["| `ddim` 25 | classifier where (t/T) | digits-FD | judge accuracy |", "|---|---|---|---|"]
    for config in ddim_configs():
        r = records.get(config_key(config))
        if r:
            if config["scale"] == 0:
                what = "unguided"
            elif "guidance_interval" in config:
                lo, hi = config["guidance_interval"]
                what = f"`--guidance-interval {lo:g},{hi:g}`" + (" (the original)" if hi == 1 else "")
            else:
                what = "default: [0, 0.995], not above the schedule's start"
            rows.append(f"| scale {config['scale']:g} | {what} | {r['digits_fd']:.1f} | {r['accuracy']:.3f} |")
    return "\n".join(rows)


def inversion_table(records: dict[str, dict]) -> str:
    rows = ["| steps | start | mean abs. error (of 255) | max abs. error |", "|---|---|---|---|"]
    for config in inversion_configs():
        r = records.get(config_key(config))
        if r:
            steps = f"`--steps {config['steps']}`" if config["steps"] else "default (`25`)"
            rows.append(f"| {steps} | {START_NAMES[config['start']]} | {r['mean_error']:.2f} | {r['max_error']} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--table", choices=("start", "precision", "ddim", "inversion", "all"), default="all")
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/.results/cosine_start.jsonl"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args()
    import tempfile

    from report import replace_block

    judge, cache = judged_session(args.threads, args.cache)
    records = cache.setdefault(args.samples, {})
    folder = tempfile.mkdtemp()
    tables = {"start": (start_configs(), measure_start), "precision": (precision_configs(), measure_precision),
              "ddim": (ddim_configs(), measure),
              "inversion": ([{**c, "folder": folder} for c in inversion_configs()], measure_inversion)}
    for name, (configs, run) in tables.items():
        for config in configs if args.table in ("all", name) else ():
            key = config_key({k: v for k, v in config.items() if k != "folder"})
            if key in records:
                continue
            record = run(config, args.samples, judge)
            records[key] = record
            with open(args.cache, "a") as f:
                f.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)
    header = f"{args.samples} class-balanced samples, seed 1, {args.threads} thread(s), CPU, fp32."
    text = {"start": f"{header}\n\n" + start_table(records), "precision": precision_table(records),
            "ddim": f"{header}\n\n" + ddim_table(records),
            "inversion": "The first 50 held-out real digits, seed 0, CPU.\n\n" + inversion_table(records)}
    print(*text.values(), sep="\n\n")
    if args.update_docs:
        for name, block in BLOCKS.items():
            replace_block(DOCS / "sampling.md", f"<!-- {block}:start -->", f"<!-- {block}:end -->", text[name])
        replace_block(DOCS / "edit.md", "<!-- edit-inversion-start:start -->", "<!-- edit-inversion-start:end -->",
                      text["inversion"])


if __name__ == "__main__":
    main()
