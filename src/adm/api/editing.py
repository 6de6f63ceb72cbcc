"""``adm.edit``: real images through a diffusion model (image-to-image, class transfer,
inpainting, DDIM inversion); the maths is in ``adm.sampling.edit``.

>>> import adm
>>> out = adm.edit("digits", inputs="heldout.npz", strength=0.7, classes="7", num_samples=20)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from adm.api.generation import Samples, run_job
from adm.api.options import RunOptions, SamplingOptions, gather, refuse_leftovers
from adm.api.setup import given_or, resolve
from adm.api.sources import ModelSource, content_fingerprint
from adm.core.distributed import Dist
from adm.core.errors import UsageError
from adm.core.progress import ProgressFn
from adm.data.images import for_channels, npz_labels, open_images
from adm.presets import Registry, default_registry
from adm.sampling.edit import EditProducer, EditSettings, fit_masks, read_masks
from adm.sampling.job import SampleJob
from adm.sampling.seeds import check_labels, parse_classes

__all__ = ["EditSettings", "edit"]


def edit(
    preset: str | None = None,
    *,
    inputs: str | Path,
    source: ModelSource | None = None,
    mask: str | Path | None = None,
    classes: str | list[int] | None = None,
    save_latents: str | Path | None = None,
    editing: EditSettings | None = None,
    sampling: SamplingOptions | None = None,
    run: RunOptions | None = None,
    dist: Dist | None = None,
    on_progress: ProgressFn | None = None,
    registry: Registry | None = None,
    **options: Any,
) -> Samples:
    """Edit real images (a folder, or an npz with labels in ``arr_1``).

    ``options`` are fields of ``EditSettings`` (strength, invert, inpaint, jumps, jump_length),
    ``SamplingOptions`` and ``RunOptions``. ``strength`` in (0, 1] is how far the inputs are
    noised (SDEdit); ``classes`` the target classes (default: the inputs' own labels, else the
    preset's plan); ``mask`` (white = keep) makes it inpainting; ``invert`` starts from their DDIM
    inversion (``sampler="ddim"``). Outputs as ``adm.sample``'s (npz, a grid of input | mask |
    output, a sidecar).
    """
    editing = gather(editing, EditSettings, options)
    sampling = gather(sampling, SamplingOptions, options)
    run = gather(run, RunOptions, options)
    refuse_leftovers(options, "edit", EditSettings, SamplingOptions, RunOptions)
    if editing.invert and sampling.sampler is None:
        sampling = sampling.model_copy(update={"sampler": "ddim"})
    if editing.invert and sampling.clip_denoised is None:  # the inversion is unclipped: mirror it
        sampling = sampling.model_copy(update={"clip_denoised": False})
    if mask is not None and "strength" not in editing.model_fields_set:
        editing = editing.model_copy(update={"strength": 1.0})  # inpaint from noise, not from the hidden pixels
    registry = registry or default_registry()
    source = source or ModelSource(preset=preset)
    collection = open_images(inputs, name="inputs")
    input_labels = npz_labels(inputs)
    total = given_or(run.num_samples, collection.count)
    if total > collection.count:
        raise UsageError(f"asked for {total} edits of {collection.count} inputs")
    if input_labels is not None and len(input_labels) < collection.count:
        raise UsageError(f"{inputs} has {collection.count} images but {len(input_labels)} labels")
    masks = read_masks(mask, (1, total, collection.count)) if mask is not None else None
    setup = resolve(source, sampling, registry, upsampler=False, device=run.device, download=run.download, dist=dist,
                    on_progress=on_progress, strength=editing.strength)
    flags = setup.loaded.flags
    collection = for_channels(collection, flags.in_channels, "inputs")
    conditioned = setup.plan.needs_labels(flags.class_cond)
    if conditioned and input_labels is None and classes is None:
        raise UsageError(f"{inputs} has no labels (arr_1), and this model is class-conditional or guided",
                         "pass --classes: the inputs' classes, or the classes to turn them into")
    if conditioned and input_labels is not None and (classes is None or editing.invert):  # the labels are used
        check_labels(input_labels[:total], setup.num_classes, f"{inputs} (arr_1)",
                     "the inversion is conditioned on them: fix them" if editing.invert
                     else "fix them, or pass --classes: the classes to edit the inputs into")
    target = None
    if classes is not None and conditioned:
        ids = parse_classes(classes, setup.num_classes)
        if not isinstance(ids, list):
            raise UsageError("--classes for adm edit lists class ids (random/balanced would invent the inputs' classes)")
        target = np.array([ids[i % len(ids)] for i in range(collection.count)], dtype=np.int64)
    if masks is not None:
        masks = fit_masks(masks, flags.image_size, (collection.height, collection.width))
    setup.warn(on_progress, total)

    job = SampleJob(
        out=run.out, num_samples=total, batch_size=setup.batch_size(run.batch_size), seed=run.seed, plan=setup.plan,
        classes=target.tolist() if target is not None else "inputs", grid_size=run.grid, notes=setup.notes(),
        overwrite=run.overwrite, extra_outputs={"latents": Path(save_latents)} if save_latents is not None else {},
        identity={**setup.identity(), "edit": editing.model_dump(), "inputs": content_fingerprint(inputs),
                  "mask": content_fingerprint(mask) if mask is not None else None},
    )
    producer = EditProducer(
        setup.networks(), setup.plan, run.seed, editing, collection.cropped(flags.image_size), input_labels,
        target, masks, keep_latents=save_latents is not None,
    )
    return run_job(job, producer, dist, on_progress)
