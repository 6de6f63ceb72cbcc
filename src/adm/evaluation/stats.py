"""The metrics of OpenAI's evaluator as functions of features: Fréchet distance, IS, precision/recall.

Nothing here runs a network or reads a file. The formulas and their numerical choices follow
``openai/guided-diffusion:evaluations/evaluator.py``:

* Fréchet distance in float64 with ``scipy.linalg.sqrtm``; if the square root is not finite, retry
  with ``1e-6·I`` added to both covariances; a complex result whose diagonal has an imaginary part
  above 1e-3 is an error, otherwise its real part is used.
* Inception Score over contiguous splits of 5,000 samples, ``exp(mean KL(p_i ‖ mean p))`` per split,
  the mean over splits reported.
* Improved precision/recall (Kynkäänniemi et al. 2019) with k = 3: the radius of a point is the
  distance to its 4th nearest point of its own set (itself included); pairwise squared distances
  are computed in float16 first and in float32 only when a block of them is not finite.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from adm.core.errors import AdmError, UsageError

IS_SPLIT_SIZE = 5000
"""Samples per Inception Score split (the original: 10 splits for 50,000 samples)."""

PR_NEIGHBOURHOOD = 3
"""k of the k-NN radius of improved precision/recall (the original's ``nhood_sizes=(3,)``)."""

PR_BLOCK_SIZE = 10_000
"""Rows and columns of one block of pairwise distances (the original's row/col batch size)."""

FID_EPS = 1e-6


# ------------------------------------------------------------------------------ moments


@dataclass
class Moments:
    """Streaming float64 sums of feature vectors, enough for their mean and covariance.

    ``update`` adds a batch; ``merge`` adds another ``Moments`` (another rank's share). The
    covariance is ``np.cov(x, rowvar=False)``'s, normalised by N − 1.
    """

    count: int
    total: torch.Tensor  # [D] float64, Σ x
    outer: torch.Tensor  # [D, D] float64, Σ x xᵀ

    @classmethod
    def zeros(cls, dim: int, device: torch.device | str = "cpu") -> Moments:
        device = torch.device(device)
        if device.type not in ("cpu", "cuda"):  # MPS has no float64
            device = torch.device("cpu")
        return cls(
            0,
            torch.zeros(dim, dtype=torch.float64, device=device),
            torch.zeros(dim, dim, dtype=torch.float64, device=device),
        )

    def update(self, features: torch.Tensor) -> None:
        x = features.to(device=self.total.device, dtype=torch.float64)
        self.count += x.shape[0]
        self.total += x.sum(0)
        self.outer += x.T @ x

    def merge(self, other: Moments) -> None:
        self.count += other.count
        self.total += other.total.to(self.total.device)
        self.outer += other.outer.to(self.outer.device)

    def to(self, device: torch.device | str) -> Moments:
        return Moments(self.count, self.total.to(device), self.outer.to(device))

    def mean(self) -> np.ndarray:
        return (self.total / self.count).cpu().numpy()

    def cov(self) -> np.ndarray:
        if self.count < 2:
            raise UsageError(f"a covariance needs at least 2 feature vectors, got {self.count}")
        mu = self.total / self.count
        sigma = (self.outer - self.count * torch.outer(mu, mu)) / (self.count - 1)
        sigma = (sigma + sigma.T) / 2
        return sigma.cpu().numpy()


def mean_and_cov(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, np.cov(features, rowvar=False))`` in float64."""
    moments = Moments.zeros(features.shape[1])
    moments.update(torch.from_numpy(np.asarray(features)))
    return moments.mean(), moments.cov()


# ------------------------------------------------------------------------------ Fréchet distance


def _sqrtm(a: np.ndarray) -> np.ndarray:
    """``scipy.linalg.sqrtm(a)`` without printing or warning, as the original's ``disp=False``."""
    import scipy
    import scipy.linalg

    with warnings.catch_warnings():
        # (near-)singular products draw a LinAlgWarning; the caller checks finiteness itself
        warnings.simplefilter("ignore")
        if tuple(int(p) for p in scipy.__version__.split(".")[:2]) < (1, 16):
            return scipy.linalg.sqrtm(a, disp=False)[0]  # older SciPy prints unless disp=False
        return scipy.linalg.sqrtm(a)  # disp is deprecated from 1.16 on


def trace_sqrt_product(
    sigma1: np.ndarray, sigma2: np.ndarray, eps: float = FID_EPS
) -> tuple[float, bool]:
    """``(tr sqrtm(Σ1·Σ2), whether eps·I had to be added)``, with the original's fallback."""
    covmean = _sqrtm(sigma1.dot(sigma2))
    offset = False
    if not np.isfinite(covmean).all():
        offset = True
        eye = np.eye(sigma1.shape[0]) * eps
        covmean = _sqrtm((sigma1 + eye).dot(sigma2 + eye))
    if np.iscomplexobj(covmean):
        imaginary = np.abs(np.diagonal(covmean).imag)
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise AdmError(
                f"the Fréchet distance is undefined here: sqrtm(Σ1·Σ2) has an imaginary part of "
                f"{imaginary.max():.3g} on its diagonal",
                "the covariances are too ill-conditioned; use more images",
            )
        covmean = covmean.real
    return float(np.trace(covmean)), offset


def frechet_distance(
    mu1: np.ndarray,
    sigma1: np.ndarray,
    mu2: np.ndarray,
    sigma2: np.ndarray,
    eps: float = FID_EPS,
) -> float:
    """``‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2 tr sqrtm(Σ1·Σ2)`` in float64 (FID on pool3, sFID on spatial)."""
    mu1, mu2 = (
        np.atleast_1d(np.asarray(mu1, np.float64)),
        np.atleast_1d(np.asarray(mu2, np.float64)),
    )
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise UsageError(
            f"statistics do not match: mean {mu1.shape} / {mu2.shape}, "
            f"covariance {sigma1.shape} / {sigma2.shape}"
        )
    diff = mu1 - mu2
    tr_covmean, _ = trace_sqrt_product(sigma1, sigma2, eps)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


# ------------------------------------------------------------------------------ Inception Score


def inception_score(logits: np.ndarray | torch.Tensor, split_size: int = IS_SPLIT_SIZE) -> float:
    """Mean over contiguous splits of ``exp(mean_i KL(p_i ‖ mean_j p_j))``, ``p = softmax(logits)``.

    ``logits`` are the unbiased Inception logits (pool3 · Wᵀ, no bias, 1008 classes). The last
    split holds the remainder, as ``range(0, N, split_size)`` in the original. Computed in float64
    (the original: float32) with ``0·log 0 = 0``.
    """
    logits = torch.as_tensor(logits).to(torch.float64)
    if logits.ndim != 2 or logits.shape[0] < 1:
        raise UsageError(f"inception_score needs [N, classes] logits, got {list(logits.shape)}")
    scores = []
    for begin in range(0, logits.shape[0], split_size):
        log_p = torch.log_softmax(logits[begin : begin + split_size], dim=1)
        p = log_p.exp()
        log_mean = torch.log(p.mean(0, keepdim=True))
        kl = torch.where(p > 0, p * (log_p - log_mean), torch.zeros_like(p)).sum(1).mean()
        scores.append(float(torch.exp(kl)))
    return float(np.mean(scores))


# ------------------------------------------------------------------------------ precision / recall


def _round16(x: torch.Tensor) -> torch.Tensor:
    """Round to float16 (overflow → inf) and back, as one float16 operation in TF would."""
    return x.half().float()


def pairwise_sq_distances(u: torch.Tensor, v: torch.Tensor, fp16: bool = True) -> torch.Tensor:
    """``max(‖u‖² − 2 u·v + ‖v‖², 0)`` for all rows of ``u`` and ``v`` as float32 ``[len(u), len(v)]``.

    With ``fp16`` (the original's path) inputs, squares, norms, the product and each sum are
    rounded to float16 as TF's float16 graph does; if anything in the block is not finite, the
    block is computed again in float32. Accumulation inside the sums and the matrix product is
    float32 here (on GPUs TF accumulates float16 matmuls in float32 too).
    """
    u, v = u.float(), v.float()
    if fp16:
        u16, v16 = _round16(u), _round16(v)
        norm_u = _round16(_round16(u16 * u16).sum(1))
        norm_v = _round16(_round16(v16 * v16).sum(1))
        prod2 = _round16(2 * _round16(u16 @ v16.T))
        d = _round16(_round16(norm_u[:, None] - prod2) + norm_v[None, :]).clamp_min_(0)
        if bool(torch.isfinite(d).all()):
            return d
    norm_u = (u * u).sum(1)
    norm_v = (v * v).sum(1)
    return (norm_u[:, None] - 2 * (u @ v.T) + norm_v[None, :]).clamp_min_(0)


def _blocks(n: int, size: int):
    for begin in range(0, n, size):
        yield begin, min(begin + size, n)


def manifold_radii(
    features: torch.Tensor,
    k: int = PR_NEIGHBOURHOOD,
    *,
    fp16: bool = True,
    block_size: int = PR_BLOCK_SIZE,
) -> torch.Tensor:
    """The squared distance of each point to its (k+1)-th nearest point of the set, itself included."""
    n = features.shape[0]
    if n <= k:
        raise UsageError(f"precision/recall with k={k} needs more than {k} images per set, got {n}")
    radii = torch.empty(n, dtype=torch.float32, device=features.device)
    for r0, r1 in _blocks(n, block_size):
        best = None
        for c0, c1 in _blocks(n, block_size):
            d = pairwise_sq_distances(features[r0:r1], features[c0:c1], fp16)
            cand = d if best is None else torch.cat([best, d], dim=1)
            best = torch.topk(cand, min(k + 1, cand.shape[1]), dim=1, largest=False).values
        radii[r0:r1] = best[:, k]
    return radii


def precision_recall(
    ref_features: np.ndarray | torch.Tensor,
    sample_features: np.ndarray | torch.Tensor,
    k: int = PR_NEIGHBOURHOOD,
    *,
    fp16: bool = True,
    block_size: int = PR_BLOCK_SIZE,
    device: torch.device | str | None = None,
) -> tuple[float, float]:
    """Improved precision and recall of samples against reference features.

    precision: the share of samples within (≤) the k-NN radius of ANY reference point; recall: the
    share of reference points within the radius of ANY sample.
    """
    ref = torch.as_tensor(ref_features, device=device).float()
    smp = torch.as_tensor(sample_features, device=device).float()
    ref_radii = manifold_radii(ref, k, fp16=fp16, block_size=block_size)
    smp_radii = manifold_radii(smp, k, fp16=fp16, block_size=block_size)
    ref_in = torch.zeros(ref.shape[0], dtype=torch.bool, device=ref.device)
    smp_in = torch.zeros(smp.shape[0], dtype=torch.bool, device=ref.device)
    for r0, r1 in _blocks(ref.shape[0], block_size):
        for c0, c1 in _blocks(smp.shape[0], block_size):
            d = pairwise_sq_distances(ref[r0:r1], smp[c0:c1], fp16)
            ref_in[r0:r1] |= (d <= smp_radii[None, c0:c1]).any(1)
            smp_in[c0:c1] |= (d <= ref_radii[r0:r1, None]).any(0)
    return float(smp_in.double().mean()), float(ref_in.double().mean())
