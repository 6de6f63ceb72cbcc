"""`adm edit` on the shipped digits model and real held-out digits: reconstruction, class transfer, inpainting.

* inversion + reconstruction: DDIM inversion of real digits to t = T − 1, then DDIM back, unguided,
  same class; mean absolute error (of 255) per number of steps;
* class transfer: each digit turned into class (label + 5) mod 10 at several strengths; the judge's
  accuracy on the target class and digits-FD, beside unedited samples of the same sampler;
* inpainting the left and the top half: the judge's accuracy on the input's own class from the
  completed image, digits-FD, and that the kept pixels are exact, for the x0 method (any sampler),
  plain replacement and RePaint's resampling.

    python benchmarks/edit_digits.py --update-docs      # tables into docs/edit.md, grids into docs/edit/
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

DOCS = Path(__file__).resolve().parents[1] / "docs"
SOLVER = {"sampler": "dpm++2m-sde", "steps": 20}


def held_out(n: int, folder: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    from adm.data.digits import load_digits

    digits = load_digits().split("heldout")
    path = folder / "real.npz"
    np.savez(path, arr_0=digits.images[:n], arr_1=digits.labels[:n])
    return path, digits.images[:n], digits.labels[:n]


def reconstruction(path: Path, images: np.ndarray) -> str:
    import adm

    rows = ["| DDIM steps | mean abs. error (of 255) | max abs. error | s / image |", "|---|---|---|---|"]
    for steps in (10, 25, 50, 100):
        start = time.perf_counter()
        out = adm.edit("digits", inputs=path, invert=True, strength=1.0, scale=0.0, steps=f"ddim{steps}", batch_size=100)
        seconds = (time.perf_counter() - start) / len(images)
        diff = np.abs(out.images.astype(int) - images.astype(int))
        rows.append(f"| {steps} | {diff.mean():.2f} | {diff.max()} | {seconds:.3f} |")
    return "\n".join(rows)


TRANSFER_METHODS = [  # (method, strength, scale, edit options): SDEdit at two scales, then DDIM inversion
    *(("SDEdit", strength, scale, SOLVER) for scale in (1.0, 4.0) for strength in (0.5, 0.6, 0.7, 0.8, 0.9)),
    *(("DDIM inversion", strength, scale, {"invert": True, "sampler": "ddim", "steps": "ddim20"})
      for strength, scale in ((0.8, 4.0), (0.9, 4.0), (0.9, 8.0), (1.0, 4.0))),
]
TRANSFER_GRID = [("SDEdit", 0.7, 1.0), ("SDEdit", 0.8, 4.0), ("DDIM inversion", 0.9, 8.0)]


def transfer(path: Path, inputs: np.ndarray, labels: np.ndarray, judge, grids: bool) -> str:
    """Class transfer, with how far each edit moved from its input (mean absolute change, of 255):
    realism (digits-FD) is bought with faithfulness, so a row is only better than another that
    changed the inputs as much."""
    import adm
    from adm.data.grid import save_grid

    target = ",".join(map(str, (labels + 5) % 10))
    measured = []  # (method, strength, scale, output)
    for scale in (1.0, 4.0):
        plain = adm.sample("digits", num_samples=len(labels), classes=target, seed=0, scale=scale, **SOLVER)
        measured.append(("unedited samples of the target classes", "–", scale, plain))
    shown = [inputs[:10]]
    for method, strength, scale, options in TRANSFER_METHODS:
        out = adm.edit("digits", inputs=path, strength=strength, scale=scale, classes=target, batch_size=100, **options)
        measured.append((method, strength, scale, out))
        if (method, strength, scale) in TRANSFER_GRID:
            shown.append(out.images[:10])
    if grids:
        (DOCS / "edit").mkdir(exist_ok=True)
        save_grid(np.concatenate(shown), DOCS / "edit" / "transfer.png", columns=10)
    scores = [judge.score(out.images, out.labels) for *_, out in measured]
    base = scores[0].digits_fd  # unedited samples at scale 1
    rows = ["| method | strength | scale | judge accuracy on the target class | digits-FD | vs unedited | "
            "mean change from the input (of 255) |", "|---|---|---|---|---|---|---|"]
    for (method, strength, scale, out), score in zip(measured, scores, strict=True):
        change = np.abs(out.images.astype(float) - inputs).mean()
        rows.append(f"| {method} | {strength} | {scale:g} | {score.accuracy:.3f} | {score.digits_fd:.1f} | "
                    f"{score.digits_fd / base:.2f}x | {change:.1f} |")
    return "\n".join(rows)


def inpainting(path: Path, images: np.ndarray, labels: np.ndarray, judge, folder: Path, grids: bool) -> str:
    import adm

    methods = {
        "x0 (dpm++2m-sde, 20 steps)": dict(inpaint="x0", **SOLVER),
        "x0 (ddpm, 25 steps)": dict(inpaint="x0", sampler="ddpm", steps="25"),
        "plain replacement (ddpm, 25 steps)": dict(inpaint="repaint", sampler="ddpm", steps="25", jumps=1),
        "RePaint, 5 jumps of 5 (ddpm, 25 steps)": dict(inpaint="repaint", sampler="ddpm", steps="25", jumps=5, jump_length=5),
    }
    rows = ["| kept half | method | judge accuracy (the input's class) | digits-FD | kept pixels exact | s / image |",
            "|---|---|---|---|---|---|"]
    for half in ("left", "top"):
        mask = np.zeros((1, 16, 16), np.uint8)
        if half == "left":
            mask[:, :, :8] = 255
        else:
            mask[:, :8, :] = 255
        mask_path = folder / f"mask-{half}.npz"
        np.savez(mask_path, arr_0=mask)
        keep = mask[0] > 0
        for name, options in methods.items():
            start = time.perf_counter()
            out = adm.edit("digits", inputs=path, strength=1.0, mask=mask_path, batch_size=100, **options)
            seconds = (time.perf_counter() - start) / len(images)
            score = judge.score(out.images, labels)
            exact = np.array_equal(out.images[:, keep], images[:, keep])
            rows.append(f"| {half} | {name} | {score.accuracy:.3f} | {score.digits_fd:.1f} | {'yes' if exact else 'NO'} "
                        f"| {seconds:.3f} |")
            if grids and name.startswith("x0 (dpm"):
                from adm.data.grid import save_grid

                (DOCS / "edit").mkdir(exist_ok=True)
                masked = images[:10].copy()
                masked[:, ~keep] = 128  # what the model is given: the unknown half grey
                save_grid(np.concatenate([images[:10], masked, out.images[:10]]), DOCS / "edit" / f"inpaint-{half}.png",
                          columns=10)
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-images", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tables", default="reconstruction,transfer,inpainting", help="comma list of the tables to make")
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from report import replace_block

    from adm.evaluation.digits_judge import Judge
    from adm.hub.download import ensure_artifact

    judge = Judge.load(ensure_artifact("digits-judge"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path, images, labels = held_out(args.num_images, folder)
        header = f"{args.num_images} held-out real digits, seed 0, {args.threads} thread(s), CPU.\n\n"
        makers = {
            "reconstruction": lambda: reconstruction(path, images),
            "transfer": lambda: transfer(path, images, labels, judge, args.update_docs),
            "inpainting": lambda: inpainting(path, images, labels, judge, folder, args.update_docs),
        }
        tables = {f"edit-{name}": header + makers[name]() for name in args.tables.split(",")}
    for name, text in tables.items():
        print(text, "\n")
        if args.update_docs:
            replace_block(DOCS / "edit.md", f"<!-- {name}:start -->", f"<!-- {name}:end -->", text)


if __name__ == "__main__":
    main()
