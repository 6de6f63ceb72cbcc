"""The last steps' order of the multistep solvers, on the shipped `digits` model: what chose adm's defaults.

Each reference lowers the order of a multistep solver's last steps by its own rule
(``adm.sampling.samplers.step_orders``): DPM-Solver below 10 solver steps, UniPC at any count,
k-diffusion never. At a given number of evaluations the rules give one of two step sequences
(order 2: the last step before σ = 0 first order, or second order), so each cell is sampled once
per distinct sequence and shown under every rule that gives it.

Every cell: the same class-balanced seeds (so the same starting noise), scored by the digits judge
(digits-FD against the real digits, lower is better; judge accuracy on the requested labels), and
for the ODE solvers the mean absolute distance of the images (in [-1, 1]) to the same ODE solved
with 100 evaluations from the same noise: how far from converged the solver is, without FD's
sampling noise.

    python benchmarks/final_order.py                   # ~20 minutes on 1 CPU thread
    python benchmarks/final_order.py --seeds 3 --samplers dpm++2m-sde --evaluations 8 10 12
    python benchmarks/final_order.py --update-docs     # the table into docs/sampling.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sampler_quality import DOCS, config_key, judged_session  # noqa: E402

SAMPLERS = ("dpm++2m", "dpm++2m-sde", "unipc")
EVALUATIONS = (8, 10, 12, 15, 20)
RULES = ("dpm-solver", "unipc", "k-diffusion")
ODE_SOLVERS = ("dpm++2m", "unipc")
REFERENCE = {"sampler": "dpm++2m", "steps": "100", "final_order": "k-diffusion"}  # the converged ODE
START, END = "<!-- final-order:start -->", "<!-- final-order:end -->"


def orders(sampler: str, evaluations: int, rule: str) -> tuple[int, ...]:
    """The step orders ``rule`` gives ``sampler`` at ``evaluations`` on its default grid."""
    from adm.sampling import get_sampler
    from adm.sampling.samplers import step_orders

    spec = get_sampler(sampler)
    levels = spec.levels_for(evaluations)
    sigmas = torch.cat([torch.linspace(2.0, 1.0, levels, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])
    return tuple(step_orders(sigmas, spec.options().order, rule))


def sample(config: dict, num_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images and labels."""
    import adm

    options = {"final_order": config["final_order"]} if "final_order" in config else {}
    result = adm.sample("digits", sampler=config["sampler"], steps=config["steps"], scale=config["scale"],
                        sampler_options=options, num_samples=num_samples, batch_size=100, seed=config.get("seed", 1),
                        device="cpu")
    return result.images, result.labels


def to_unit(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float64) / 127.5 - 1


def measure(config: dict, num_samples: int, judge, reference: np.ndarray | None) -> dict:
    images, labels = sample(config, num_samples)
    scores = judge.score(images, labels)
    distance = float(np.abs(to_unit(images) - to_unit(reference)).mean()) if reference is not None else None
    return {"config": config, "num_samples": num_samples, "digits_fd": scores.digits_fd,
            "accuracy": scores.accuracy, "ode_distance": distance}


def ode_reference(scale: float, seed: int, num_samples: int, cache: Path) -> np.ndarray:
    """The converged ODE's images from the same noise (kept beside the cache: minutes to make)."""
    path = cache.with_name(f"{cache.stem}-reference-{scale:g}-{num_samples}" + (f"-seed{seed}" if seed > 1 else "") + ".npy")
    if not path.is_file():
        np.save(path, sample({**REFERENCE, "scale": scale, "seed": seed}, num_samples)[0])
    return np.load(path)


def cells(samplers=SAMPLERS, evaluations=EVALUATIONS) -> list[tuple[dict, list[str]]]:
    """One configuration per distinct step sequence, with the rules that give it (first rule sampled)."""
    found = []
    for sampler in samplers:
        for n in evaluations:
            by_orders: dict[tuple[int, ...], list[str]] = {}
            for rule in RULES:
                by_orders.setdefault(orders(sampler, n, rule), []).append(rule)
            for rules in by_orders.values():
                for scale in (1.0, 0.0):
                    found.append(({"sampler": sampler, "steps": str(n), "scale": scale, "final_order": rules[0]}, rules))
    return found


def lowers(config: dict) -> bool:
    sequence = orders(config["sampler"], int(config["steps"]), config["final_order"])
    return sequence[-2] < max(sequence)


def seeded(config: dict, seed: int) -> dict:
    return {**config, "seed": seed} if seed > 1 else config  # seed 1 keeps the first runs' keys


def summary(records: dict[str, dict], config: dict) -> list[str]:
    """digits-FD (mean over the seeds measured), accuracy, distance to the ODE, and the seed count."""
    runs = [r for seed in range(1, 100) if (r := records.get(config_key(seeded(config, seed))))]
    if not runs:
        return ["–"] * 3
    fd = statistics.mean(r["digits_fd"] for r in runs)
    accuracy = statistics.mean(r["accuracy"] for r in runs)
    distances = [r["ode_distance"] for r in runs if r["ode_distance"] is not None]
    seeds = f" ({len(runs)} seeds)" if len(runs) > 1 else ""
    return [f"{fd:.1f}{seeds}", f"{accuracy:.3f}", f"{statistics.mean(distances):.5f}" if distances else "–"]


def table(records: dict[str, dict]) -> str:
    rows = ["| sampler | NFE | rules | last step before σ = 0 | guided: digits-FD | accuracy | distance to ODE "
            "| unguided: digits-FD | accuracy | distance to ODE |", "|---" * 10 + "|"]
    for config, rules in cells():
        if config["scale"] == 0.0:
            continue
        cols = summary(records, config) + summary(records, {**config, "scale": 0.0})
        step = "first order" if lowers(config) else "second order"
        names = ", ".join(f"`{rule}`" for rule in rules)
        rows.append(f"| `{config['sampler']}` | {config['steps']} | {names} | {step} | " + " | ".join(cols) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/.results/final_order.jsonl"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=1, help="run seeds 1..N (FD at 300 samples moves with the seed)")
    parser.add_argument("--samplers", nargs="+", default=SAMPLERS, choices=SAMPLERS)
    parser.add_argument("--evaluations", nargs="+", type=int, default=EVALUATIONS)
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args()
    from report import replace_block

    judge, cache = judged_session(args.threads, args.cache)
    records = cache.setdefault(args.samples, {})
    wanted = [seeded(config, seed) for seed in range(1, args.seeds + 1) for config, _ in cells(args.samplers, args.evaluations)]
    for config in wanted:
        if config_key(config) in records:
            continue
        reference = (ode_reference(config["scale"], config.get("seed", 1), args.samples, args.cache)
                     if config["sampler"] in ODE_SOLVERS else None)
        record = measure(config, args.samples, judge, reference)
        records[config_key(config)] = record
        with open(args.cache, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)
    text = (f"{args.samples} class-balanced samples, seed 1 (the same noise in every cell; where more seeds were run, "
            f"the mean over them), {args.threads} thread(s), CPU, fp32, default (log-SNR) grid. Distance to ODE: mean "
            f"|x − x_ODE| in [-1, 1] against `{REFERENCE['sampler']}` at {REFERENCE['steps']} evaluations from the same "
            "noise.\n\n" + table(records))
    print(text)
    if args.update_docs:
        replace_block(DOCS / "sampling.md", START, END, text)


if __name__ == "__main__":
    main()
