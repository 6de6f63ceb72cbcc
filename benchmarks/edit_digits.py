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


def transfer(path: Path, labels: np.ndarray, judge, grids: bool) -> str:
    import adm
    from adm.data.grid import save_grid

    target = (labels + 5) % 10
    plain = adm.sample("digits", num_samples=len(labels), classes=",".join(map(str, target)), seed=0, **SOLVER)
    base = judge.score(plain.images, plain.labels)
    rows = ["| strength | judge accuracy on the target class | digits-FD |", "|---|---|---|",
            f"| (unedited samples of the target classes) | {base.accuracy:.3f} | {base.digits_fd:.1f} |"]
    for strength in (0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        out = adm.edit("digits", inputs=path, strength=strength, classes=",".join(map(str, target)), **SOLVER,
                       batch_size=100)
        score = judge.score(out.images, out.labels)
        rows.append(f"| {strength} | {score.accuracy:.3f} | {score.digits_fd:.1f} |")
        if grids and strength == 0.7:
            (DOCS / "edit").mkdir(exist_ok=True)
            original = np.load(path)["arr_0"][:10]
            save_grid(np.concatenate([original, out.images[:10]]), DOCS / "edit" / "transfer-0.7.png", columns=10)
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
        tables = {
            "edit-reconstruction": header + reconstruction(path, images),
            "edit-transfer": header + transfer(path, labels, judge, args.update_docs),
            "edit-inpainting": header + inpainting(path, images, labels, judge, folder, args.update_docs),
        }
    for name, text in tables.items():
        print(text, "\n")
        if args.update_docs:
            replace_block(DOCS / "edit.md", f"<!-- {name}:start -->", f"<!-- {name}:end -->", text)


if __name__ == "__main__":
    main()
