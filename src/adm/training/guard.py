"""Steps whose loss or gradient is not finite: skipped, counted, and a diverged run stopped.

One NaN that reaches AdamW poisons its moments and, through them, every weight at the next step;
the EMAs follow, and every checkpoint written after it is noise that overwrites (``--keep``) the
last good one (guided-diffusion#50: fp16 runs that went NaN trained and saved on). The trainer
asks ``NonFiniteGuard`` before each optimizer step whether to take it; the loop asks it after the
step whether to go on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from adm.core.distributed import Dist
from adm.core.errors import DivergedError
from adm.training.checkpoint import read_records

TINY_LOSS_SCALE = 1.0
"""An fp16 overflow at a loss scale at or below this is counted as non-finite: the gradients
overflow unscaled, which no smaller scale cures (GradScaler starts at 2**16 and halves per overflow,
so it takes 16 overflows in a row to get here: its warm-up never does)."""

HINT = ("lower --lr or set --grad-clip (in fp16: try bf16), then run adm train on the same --run-dir; if param_norm "
        "in metrics.jsonl had already grown huge, start a new --run-dir")


@dataclass(frozen=True)
class Verdict:
    """What the ranks agreed on about one step's losses and gradient."""

    loss_finite: bool = True
    grad_finite: bool = True
    counted: bool = False  # a non-finite step (``nonfinite_steps``), not an fp16 scaler overflow

    @property
    def skip(self) -> bool:
        """No optimizer step, no EMA update: anything not finite would reach the weights."""
        return not (self.loss_finite and self.grad_finite)


class NonFiniteGuard:
    """Skips and counts steps whose loss or gradient is not finite; stops a run that only has those.

    Why a policy and not just a check: a single NaN batch (a corrupt image, an unlucky timestep)
    is best skipped and forgotten, while a run whose every step is NaN has diverged and must stop
    before it writes checkpoints of nothing. So every such step is skipped (no optimizer step, no
    EMA update, its losses neither logged nor fed to the timestep sampler), and after ``limit``
    counted steps in a row (``--max-nonfinite``; 0: never) the loop stops with a ``DivergedError``
    naming the step and the newest checkpoint, which is good: no checkpoint is written of weights
    that are not finite (``check_weights``), and the stop writes none.

    * The ranks decide together (one all-reduce of the flags), so a NaN on one rank skips the
      step everywhere and DDP's replicas stay identical.
    * fp16: GradScaler's overflows are skipped as before (the scaler lowers its scale), but they
      are part of how loss scaling works, so only those at a scale of ``TINY_LOSS_SCALE`` or less
      are counted; a loss that is not finite is counted at any scale.
    * The counts are a function of the data and the weights; they are saved with each checkpoint
      (``state_dict``), so a resumed run logs and stops exactly where a straight one would.
    """

    def __init__(self, limit: int, dist: Dist):
        self.limit, self.dist = limit, dist
        self.streak = 0  # counted steps in a row, up to the last one judged
        self.total = 0  # counted steps in the whole run
        self.last = Verdict()
        self.noted = False  # the progress note is given once per process

    def judge(self, losses: torch.Tensor, norm: torch.Tensor, scale: Callable[[], float] | None) -> Verdict:
        """The verdict on a step from its (micro-batch) losses and gradient norm, agreed by every rank.

        ``scale`` gives the fp16 loss scale the gradients were computed at (None: no scaler).
        """
        flags = torch.stack([(~torch.isfinite(losses)).any(), ~torch.isfinite(norm)]).float()
        loss_bad, grad_bad = (value > 0 for value in self.dist.all_reduce_mean(flags).tolist())
        counted = loss_bad or (grad_bad and (scale is None or scale() <= TINY_LOSS_SCALE))
        self.streak = self.streak + 1 if counted else 0
        self.total += int(counted)
        self.last = Verdict(not loss_bad, not grad_bad, counted)
        return self.last

    def check(self, step: int, run_dir: Path) -> str | None:
        """After optimizer step ``step``: raise ``DivergedError`` once ``limit`` steps in a row were
        counted (before the loop saves anything of it); a progress note the first time one is."""
        if not self.last.counted:
            return None
        if self.limit and self.streak >= self.limit:
            first = step - self.streak + 1
            raise self._stop(
                f"the loss or gradient was not finite at {self.streak} steps in a row ({first}-{step}, "
                f"--max-nonfinite {self.limit})", step, run_dir, first - 1,
            )
        if self.noted:
            return None
        self.noted = True
        what = "gradient" if self.last.loss_finite else "loss"
        stop = f"{self.limit} in a row stop the run" if self.limit else "--max-nonfinite 0: the run never stops for them"
        return f"step {step}: the {what} is not finite, the step was skipped (nonfinite_steps in metrics.jsonl; {stop})"

    def check_weights(self, params: Iterable[torch.Tensor], step: int, run_dir: Path) -> None:
        """Refuse to checkpoint weights that are not finite (a finite update can still overflow
        them, e.g. with an absurd ``--lr``): the newest checkpoint stays the last good one."""
        finite = torch.stack([p.detach().isfinite().all() for p in params]).all()
        if not bool(finite):
            raise self._stop("the weights are not finite", step, run_dir, step)

    def fields(self) -> dict[str, Any]:
        """What a metrics record shows: ``nonfinite_steps`` so far, once there is one."""
        return {"nonfinite_steps": self.total} if self.total else {}

    def state_dict(self) -> dict[str, Any]:
        return {"streak": self.streak, "total": self.total}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.streak, self.total = int(state.get("streak", 0)), int(state.get("total", 0))

    @staticmethod
    def _stop(reason: str, step: int, run_dir: Path, changed: int) -> DivergedError:
        """The error naming the newest checkpoint (``changed``: the last step that changed the weights)."""
        records = read_records(run_dir)
        if records:
            good = records[-1]
            kept = f"the last good checkpoint, step {good.step}, is kept: {Path(run_dir) / good.model}"
            if good.step > changed:  # written during the streak: the skipped steps changed nothing
                kept += f" (the weights of step {changed}: the skipped steps changed nothing)"
        else:
            kept = "no checkpoint had been saved yet"
        return DivergedError(f"training stopped at step {step}: {reason}; {kept}", HINT)
