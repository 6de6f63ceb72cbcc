"""What a preset and an artifact are: typed, frozen records validated once at registration."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from adm.spec.flags import (
    ClassifierFlags,
    DiffusionFlags,
    ModelFlags,
    SuperResFlags,
    parse_flags,
    parse_model_flags,
)

ArtifactKind = Literal["checkpoint", "reference", "weights", "other"]
# A training task's kind (adm.training.tasks: "diffusion", "classifier" or one a package registers
# under adm.training_tasks); checked against the task registry when a run uses it.
TrainKind = str
FlagSet = Literal["model", "classifier"]  # which network flags a training task records and reads


def flag_set(kind: TrainKind, flags: FlagSet | None = None) -> FlagSet:
    """The flag set of a training preset of ``kind``: the task's when the caller knows it, else
    classifier flags for the classifier kind and model flags for every other."""
    return flags or ("classifier" if kind == "classifier" else "model")

# How `adm presets` groups released models, in this order: a flag family (whose code and
# conventions a network uses), or who released it. A plugin may name its own group.
FAMILY_ORDER = ("guided-diffusion", "improved-diffusion", "consistency-models", "third-party", "demo")


class Artifact(BaseModel):
    """A downloadable file: where it lives, what it should look like when it arrives."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="the name users type: `adm download NAME`")
    url: str = Field(description="canonical URL")
    filename: str = Field(description="file name in the cache")
    mirror_path: str | None = Field(
        default=None, description="path below ADM_BASE_URL on a mirror (default: the file name)"
    )
    size: int | None = Field(default=None, description="expected size in bytes, when known")
    sha256: str | None = Field(
        default=None,
        description="expected sha256 when published, or its first 8+ hex digits (torch.hub file-name convention)",
        pattern=r"^[0-9a-fA-F]{8,64}$",
    )
    kind: ArtifactKind = "other"
    description: str = ""
    import_only: bool = Field(
        default=False,
        description="no direct download (``url`` is the page that links it): the user fetches the file "
        "and imports it with `adm download NAME --from-file F` (a mirror, ADM_BASE_URL, still serves it)",
    )


class SamplingDefaults(BaseModel):
    """How this model is sampled by default (the paper / README's settings for released models).

    ``steps`` is a respacing for ``ddpm`` / ``ddim`` and a number of network evaluations for the
    solvers; ``options`` are the sampler's options (``adm samplers`` lists them).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    sampler: str = "ddpm"
    steps: str = "250"
    options: dict[str, Any] = Field(default_factory=dict)
    batch_size: int = 4
    clip_denoised: bool = True
    num_samples: int = 16
    classes: str = "random"


class Preset(BaseModel):
    """One released model: its flags, its classifier, and how it is sampled by default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    model_flags: ModelFlags | SuperResFlags
    classifier_flags: ClassifierFlags | None = None
    checkpoint: str | None = Field(default=None, description="artifact name of the model weights")
    classifier_checkpoint: str | None = Field(default=None, description="artifact name of the classifier")
    classifier_scale: float = Field(default=0.0, description="default guidance scale (0 = unguided)")
    cfg_scale: float = Field(default=0.0, ge=0, description="default classifier-free guidance scale (0 = unguided)")
    autoguidance: float = Field(default=0.0, ge=0, description="default autoguidance scale (0 = unguided)")
    guide_model: str | None = Field(default=None, description="autoguidance's guide by default (a preset name)")
    classifier_noise: str | None = Field(
        default=None,
        description="the noising process the classifier was trained on (diffusion flags), when it is not the "
                    "model's: an EDM model is guided through the σ ↔ t map of this schedule",
    )
    sampling: SamplingDefaults = SamplingDefaults()
    base_preset: str | None = Field(default=None, description="upsamplers: the preset whose samples they upsample")
    results: dict[str, float] = Field(default_factory=dict, description="published metrics, for reference")
    source: str = Field(default="", description="where the flags, defaults and results were published")
    family: str = Field(
        default="",
        validate_default=True,
        description="the group `adm presets` lists it under (FAMILY_ORDER); default: its flags' --family",
    )

    @field_validator("model_flags", mode="before")
    @classmethod
    def _model_flags(cls, value: Any):
        if isinstance(value, (ModelFlags, SuperResFlags)):
            return value
        return parse_model_flags(value)

    @field_validator("classifier_flags", mode="before")
    @classmethod
    def _classifier_flags(cls, value: Any):
        if value is None or isinstance(value, ClassifierFlags):
            return value
        return parse_flags(ClassifierFlags, value)

    @field_validator("family")
    @classmethod
    def _family(cls, value: str, info: ValidationInfo) -> str:
        """Unset: the family of the code the flags are written for (a checkpoint released by
        another group says so explicitly, e.g. ``third-party``)."""
        flags = info.data.get("model_flags")
        return value or (flags.family if flags is not None else "")

    @property
    def is_upsampler(self) -> bool:
        return isinstance(self.model_flags, SuperResFlags)

    @staticmethod
    def by_family(presets: Iterable[Preset]) -> dict[str, list[Preset]]:
        """Presets grouped by ``family``: FAMILY_ORDER's groups first, then any a plugin names,
        each in registration order (what `adm presets` lists)."""
        groups: dict[str, list[Preset]] = {family: [] for family in FAMILY_ORDER}
        for preset in presets:
            groups.setdefault(preset.family, []).append(preset)
        return {family: members for family, members in groups.items() if members}

    @property
    def artifacts(self) -> list[str]:
        """Everything `adm download PRESET` fetches."""
        return [a for a in (self.checkpoint, self.classifier_checkpoint) if a]

    def to_json_dict(self) -> dict[str, Any]:
        """The preset in the original's flag names (what `adm presets NAME --json` prints)."""
        return {
            "name": self.name,
            "family": self.family,
            "description": self.description,
            "kind": "upsampler" if self.is_upsampler else "diffusion",
            "model_flags": self.model_flags.flag_dict(),
            "classifier_flags": self.classifier_flags.flag_dict() if self.classifier_flags else None,
            "classifier_scale": self.classifier_scale,
            "classifier_noise": self.classifier_noise,
            "cfg_scale": self.cfg_scale,
            "autoguidance": self.autoguidance,
            "guide_model": self.guide_model,
            "sampling": self.sampling.model_dump(),
            "checkpoint": self.checkpoint,
            "classifier_checkpoint": self.classifier_checkpoint,
            "download": self.artifacts,
            "base_preset": self.base_preset,
            "results": self.results,
            "source": self.source,
        }


class TrainPreset(BaseModel):
    """A network plus the training values that differ from the defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    kind: TrainKind = Field(description="the training task it is for (diffusion, classifier, or a plugin's kind)")
    description: str = ""
    flags: str | None = Field(None, description="network flags (original syntax); None: the released preset's")
    released: str | None = Field(None, description="adm preset whose flags (and checkpoint) this is")
    changes: str = Field(
        "", description="network flags on top of the released preset's (original syntax): its network, changed "
                        "(e.g. --class_cond False), so the flags are written once, in the released preset"
    )
    diffusion_flags: str = Field("", description="classifiers: the noising process (diffusion_defaults names)")
    train: dict[str, Any] = Field(default_factory=dict, description="TrainConfig values")
    source: str = ""
    unverified: tuple[str, ...] = Field((), description="values transcribed from memory of the paper: check them")
    unknown: tuple[str, ...] = Field((), description="what the sources do not state")

    @model_validator(mode="after")
    def _changes_need_a_release(self) -> TrainPreset:
        """Own flags are written whole; only a released preset's network is changed by ``changes``."""
        if self.changes and (self.flags is not None or self.released is None):
            raise ValueError(f"training preset {self.name!r}: `changes` applies to a released preset's flags "
                             "(give `released`, not `flags`)")
        return self

    def noise_flags(self) -> DiffusionFlags:
        return parse_flags(DiffusionFlags, self.diffusion_flags)
