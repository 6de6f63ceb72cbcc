"""``adm distill``'s config (torch-free: ``adm --help`` builds the command's options from it).

The distillation itself is ``adm.training.distill``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from adm.training.config import CommonTrainConfig, WatchConfig

KIND = "distillation"  # the run dir's kind


class DistillConfig(WatchConfig, CommonTrainConfig):
    """Consistency distillation: the training knobs of ``adm train`` plus the distillation's own.

    The student is a generator, so a distillation is watched as ``adm train`` is (``WatchConfig``:
    ``--sample-every``, ``--eval-every``). ``target_ema`` is always one of ``ema_rates`` (added when missing): the trainer keeps, saves
    and restores the target network like any EMA.
    """

    random_flip: bool = Field(False, description="horizontal flip with p = 0.5 (off: the teacher's images as they are; "
                                                 "digits are not symmetric)")
    ema_rates: tuple[float, ...] = Field((0.999,), description="EMA decay rates for sampling (--target-ema is added)")
    scales: int = Field(18, ge=2, le=10_000, description="N: levels of the Karras grid the student is distilled on "
                                                         "(Song et al. 2023: 18 for CIFAR-10, 40 for ImageNet-64)")
    levels_per_step: int = Field(4, ge=1, description="levels one optimizer step trains: the batch is split into this "
                                                       "many groups, each with its own level and one teacher call "
                                                       "(the reference: one per sample)")
    sigma_max: float | None = Field(None, gt=0, description="the grid's top sigma; unset: where the teacher's own sampling starts (set 10 for "
                                                            "an eps-prediction VP teacher: its x0 is poor above)")
    teacher_solver: str = Field("heun", description="the teacher's ODE step between adjacent levels: heun (2 "
                                                    "evaluations), euler (1), or a deterministic adm solver "
                                                    "(dpm++2m, unipc: on 2 levels they are euler)")
    target_ema: float = Field(0.95, gt=0, lt=1, description="EMA rate of the target network (Song et al. 2023: "
                                                             "0.95 for distillation)")
    loss: str = Field("pseudo-huber", description="distance between the student and the target: pseudo-huber "
                                                  "(Song & Dhariwal 2023) or l2, the mean square")
    huber_c: float | None = Field(None, gt=0, description="the pseudo-Huber c; unset: 0.00054·sqrt(C·H·W)")
    dropout: float | None = Field(None, ge=0, lt=1, description="the student's dropout; unset: the teacher's")

    @model_validator(mode="before")
    @classmethod
    def _target_is_an_ema(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        target = values.get("target_ema", cls.model_fields["target_ema"].default)
        rates = values.get("ema_rates", cls.model_fields["ema_rates"].default)
        try:
            target, rates = float(target), tuple(float(r) for r in rates)
        except (TypeError, ValueError):
            return values  # the fields' own validation names the bad value
        return values if target in rates else {**values, "ema_rates": (*rates, target)}
