"""The digits "judge": a small clean-image classifier that scores generated digits.

Inception features mean nothing on 16×16 digits, so the demo preset gets its own yardstick,
trained on the same data (held-out split reported): the class accuracy of generated samples
against the labels they were asked for (how well guidance steers), and a Fréchet distance in the
judge's 128-d penultimate features against the real digits ("digits-FD", how real they look).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from adm.core.errors import UsageError
from adm.core.fileio import atomic_path
from adm.core.progress import ProgressFn, report
from adm.data.digits import Digits
from adm.evaluation.stats import covariance_warning, frechet_distance, mean_and_cov
from adm.hub.checkpoints import load_state_dict

FEATURES = 128


class DigitJudge(nn.Module):
    """Three convolutions and two linear layers; ``features`` is the 128-d penultimate layer."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.ReLU(),  # 8x8
            nn.Conv2d(64, 64, 3, stride=2, padding=1),
            nn.ReLU(),  # 4x4
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, FEATURES),
            nn.ReLU(),
        )
        self.head = nn.Linear(FEATURES, num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.trunk(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC → float NCHW in [-1, 1], the same scaling the diffusion models see."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (16, 16, 3):
        raise UsageError(
            f"the digits judge takes uint8 [N, 16, 16, 3] images, got {images.dtype} {list(images.shape)}"
        )
    return torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


def _shifted(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random translations of up to one pixel: cheap augmentation against overfitting 1.4k images."""
    padded = F.pad(x, (1, 1, 1, 1), value=-1.0)
    dy, dx = torch.randint(0, 3, (2,), generator=generator).tolist()
    return padded[:, :, dy : dy + 16, dx : dx + 16]


def train_judge(
    train: Digits, *, epochs: int = 40, batch_size: int = 64, seed: int = 0, lr: float = 2e-3
) -> DigitJudge:
    """Train the judge on clean images (deterministic for a seed on the CPU)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = DigitJudge()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    x, y = to_input(train.images), torch.from_numpy(train.labels)
    steps = epochs * ((len(y) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), batch_size):
            idx = order[start : start + batch_size]
            loss = F.cross_entropy(net(_shifted(x[idx], generator)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


@torch.no_grad()
def judge(
    net: DigitJudge, images: np.ndarray, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted classes and float64 features of uint8 NHWC images."""
    preds, feats = [], []
    for start in range(0, len(images), batch_size):
        h = net.features(to_input(images[start : start + batch_size]))
        preds.append(net.head(h).argmax(1).numpy())
        feats.append(h.double().numpy())
    return np.concatenate(preds), np.concatenate(feats)


@dataclass(frozen=True)
class DigitScores:
    accuracy: float | None  # fraction of samples the judge reads as their requested label
    digits_fd: float  # Fréchet distance to the reference (the real digits) in the judge's feature space
    num_samples: int

    def as_dict(self) -> dict:
        return {"digits_accuracy": self.accuracy, "digits_fd": self.digits_fd, "num_samples": self.num_samples}


@dataclass(frozen=True)
class Judge:
    """The judge network with the statistics of its features on all 1,797 real digits."""

    net: DigitJudge
    real_mu: np.ndarray
    real_sigma: np.ndarray

    @classmethod
    def fit_statistics(cls, net: DigitJudge, real: Digits) -> Judge:
        _, features = judge(net, real.images)
        mu, sigma = mean_and_cov(features)
        return cls(net, mu, sigma)

    def save(self, path: str | Path) -> Path:
        """One safetensors file: the network's weights plus ``real.mu`` / ``real.sigma`` (float64)."""
        tensors = {f"net.{k}": v.contiguous() for k, v in self.net.state_dict().items()}
        tensors["real.mu"] = torch.from_numpy(self.real_mu)
        tensors["real.sigma"] = torch.from_numpy(self.real_sigma)
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Judge:
        tensors = load_state_dict(path)
        net = DigitJudge()
        net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        return cls(net.eval(), tensors["real.mu"].numpy(), tensors["real.sigma"].numpy())

    def score(self, images: np.ndarray, labels: np.ndarray | None, reference: np.ndarray | None = None) -> DigitScores:
        """Judge accuracy against ``labels`` (when given) and digits-FD against ``reference`` images
        (their features' statistics), by default against the real digits."""
        if len(images) < 2:
            raise UsageError(f"need at least 2 samples for a Fréchet distance, got {len(images)}")
        predicted, features = judge(self.net, images)
        accuracy = float((predicted == labels).mean()) if labels is not None else None
        mu, sigma = mean_and_cov(features)
        ref_mu, ref_sigma = self.real_mu, self.real_sigma
        if reference is not None:
            ref_mu, ref_sigma = mean_and_cov(judge(self.net, reference)[1])
        return DigitScores(accuracy, float(frechet_distance(mu, sigma, ref_mu, ref_sigma)), len(images))


REAL_DIGITS = "the real digits (built in)"
"""What digits-FD is measured against without a reference."""


def _read_digits(path: str | Path, name: str) -> np.ndarray:
    """Every image of an npz or folder of 16x16 digits (named ``name`` in errors)."""
    from adm.data.images import npz_keys, open_images

    path = Path(path)
    if path.suffix.lower() == ".npz" and path.is_file():
        keys = npz_keys(path)
        if "arr_0" not in keys and "mu" in keys:
            raise UsageError(f"{name} {path} holds Inception statistics but no images; the digits metric compares "
                             "the judge's features of images", "pass an npz whose arr_0 holds images, or a folder")
    collection = open_images(path, name=name)
    if collection.channels not in (1, 3):
        raise UsageError(f"the digits judge reads grayscale or RGB images; {name} {path} holds "
                         f"{collection.channels}-channel ones", "use a metric for any channel count (--metric NAME)")
    collection = collection.as_rgb()  # grayscale: the digits are grey replicated to RGB (adm.data.digits)
    if (collection.height, collection.width) != (16, 16):
        raise UsageError(f"the digits judge reads 16x16 images; {name} {path} holds "
                         f"{collection.width}x{collection.height}")
    if collection.count < 2:
        raise UsageError(f"{name} {path} holds {collection.count} image(s); a Fréchet distance needs at least 2")
    return np.concatenate(list(collection.batches(1024)))


def _requested_labels(path: str | Path, count: int, num_classes: int) -> np.ndarray | None:
    """``arr_1``: the labels the samples were asked for, all of them classes the judge knows."""
    from adm.data.images import npz_labels

    labels = npz_labels(path)
    if labels is None:
        return None
    if len(labels) < count:
        raise UsageError(f"{path}: arr_1 holds {len(labels)} labels for {count} images")
    labels = labels[:count]
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise UsageError(f"{path}: label {int(labels[bad[0]])} (image {int(bad[0])}) is out of range for the digits "
                         f"judge's {num_classes} classes (0..{num_classes - 1})")
    return labels


def evaluate_digits(
    samples: str | Path,
    judge_path: str | Path,
    *,
    ref: str | Path | None = None,
    on_progress: ProgressFn | None = None,
) -> dict:
    """``adm evaluate --metric digits``: judge accuracy (when the npz has labels) and digits-FD,
    against the images of ``ref`` (npz or folder of 16x16 images) or else the real digits.

    A Fréchet distance from no more vectors than the judge's 128 features is reported, with a
    warning through ``on_progress`` (``covariance_warning``).
    """
    images = _read_digits(samples, "samples")
    referee = Judge.load(judge_path)
    labels = _requested_labels(samples, len(images), referee.net.head.out_features)
    reference = None if ref is None else _read_digits(ref, "reference")
    counts = {"samples": len(images)} if reference is None else {"samples": len(images), "reference images": len(reference)}
    for whose, count in counts.items():
        warning = covariance_warning("digits-FD", count, FEATURES, whose)
        if warning:
            report(on_progress, "digits", 0, None, message=f"warning: {warning}")
    scores = referee.score(images, labels, reference)
    return {**scores.as_dict(), "ref": REAL_DIGITS if ref is None else str(ref)}
