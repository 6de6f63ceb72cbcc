"""The options that ``sample``, ``upsample`` and ``edit`` share, declared once.

Each is a typed settings object: the functions take one (``sampling=SamplingOptions(...)``) or
its fields as keywords (``adm.sample("digits", sampler="unipc", seed=3)``), and the CLI builds
the same objects from its options (``adm.cli.config_options`` generates those options from these
fields, help texts included). An unset field (None) means "the preset's default".
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from adm.core.errors import UsageError
from adm.core.suggest import did_you_mean
from adm.core.validation import validated
from adm.sampling.choices import SamplingChoices
from adm.sampling.edit_settings import EditSettings as EditSettings  # adm edit's own options


class SamplingOptions(SamplingChoices):
    """How images are drawn: the sampling choices (``adm.sampling.choices``, where each field is
    declared) plus what only the front end takes."""

    sampler_options: dict[str, Any] = Field(default_factory=dict, description="the sampler's own options, e.g. "
                                            "{'order': 1} (`adm samplers` lists them)")
    eta: float | None = Field(None, description="shorthand for the sampler option eta (ddim, dpm++2m-sde)")
    compile: bool = Field(False, description="torch.compile the diffusion model (a one-time cost; pays off for "
                          "long GPU runs; results may differ in the last bits)")


class RunOptions(BaseModel):
    """Where a run writes and how it is cut into batches: the output, seeds, device."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    num_samples: int | None = Field(None, description="how many images; unset: the preset's (all inputs for "
                                    "upsample and edit)")
    batch_size: int | None = Field(None, description="images per forward pass; unset: the preset's")
    seed: int = Field(0, description="sample i depends only on (seed, i): same seed, same images")
    out: Path | None = Field(None, description="output .npz (resumable); unset: the images come back in memory")
    overwrite: bool = Field(False, description="replace an output (and shards) that a different command made, "
                            "instead of refusing")
    grid: int = Field(64, ge=0, description="how many samples the PNG grid beside the npz shows (0: none)")
    device: Any = Field(None, description="cpu, cuda, cuda:N or mps; unset: the best available")
    download: bool = Field(False, description="fetch missing checkpoints into the cache first")


S = TypeVar("S", bound=BaseModel)


def gather(given: S | None, cls: type[S], loose: dict[str, Any]) -> S:
    """``given`` (or a default ``cls()``) updated by those of ``loose``'s keys that are ``cls``'s
    fields, which are taken out of ``loose``; validated into one-line errors."""
    mine = {k: loose.pop(k) for k in list(loose) if k in cls.model_fields}
    if given is None:
        return validated(cls, mine)
    return validated(cls, {**given.model_dump(exclude_unset=True), **mine}) if mine else given


def refuse_leftovers(loose: Mapping[str, Any], function: str, *models: type[BaseModel]) -> None:
    """A keyword no settings object has is a typo: name it and the close ones."""
    if loose:
        name = next(iter(loose))
        known = [f for m in models for f in m.model_fields]
        raise UsageError(f"{function}() got an unknown option {name!r}", did_you_mean(name, known, f"{function} takes:"))
