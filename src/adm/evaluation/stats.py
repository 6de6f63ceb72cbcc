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
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from adm.core.errors import AdmError, UsageError

IS_SPLIT_SIZE = 5000
"""Samples per Inception Score split (the original: 10 splits for 50,000 samples)."""

PR_NEIGHBOURHOOD = 3
"""k of the k-NN radius of improved precision/recall (the original's ``nhood_sizes=(3,)``)."""

PR_BLOCK_SIZE = 10_000
"""Rows and columns of one block of pairwise distances (the original's row/col batch size)."""

FID_EPS = 1e-6


# ------------------------------------------------------------------------------ moments


MOMENTS_FOLD_ROWS = 2048
"""Feature vectors ``Moments`` collects before adding their outer products in one multiplication."""


@dataclass
class Moments:
    """Streaming float64 sums of feature vectors, enough for their mean and covariance.

    ``update`` adds a batch; ``merge`` adds another ``Moments`` (another rank's share). The
    covariance is ``np.cov(x, rowvar=False)``'s, normalised by N − 1.

    Batches are copied into a buffer of ``MOMENTS_FOLD_ROWS`` rows, which is folded into the sums
    with one product when full: Σ x xᵀ one 64-image batch at a time spends most of its time
    reading and writing the D×D sum, not multiplying. On the CPU the product goes through NumPy,
    whose ``xᵀ @ x`` is BLAS's symmetric rank-k update (half the multiplications of a general
    product, and the result exactly symmetric).
    """

    count: int  # vectors seen, buffered ones included
    total: torch.Tensor  # [D] float64, Σ x
    outer: torch.Tensor  # [D, D] float64, Σ x xᵀ
    buffer: torch.Tensor | None = field(default=None, repr=False)  # [FOLD_ROWS, D] float64
    buffered: int = 0  # rows of ``buffer`` not yet in the sums

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
        x = features.detach().reshape(-1, self.total.shape[0])
        self.count += x.shape[0]
        while x.shape[0]:
            if self.buffer is None:
                self.buffer = self.total.new_empty(MOMENTS_FOLD_ROWS, self.total.shape[0])
            take = min(x.shape[0], MOMENTS_FOLD_ROWS - self.buffered)
            self.buffer[self.buffered : self.buffered + take] = x[:take]  # to float64 on the way
            self.buffered += take
            x = x[take:]
            if self.buffered == MOMENTS_FOLD_ROWS:
                self._fold()

    def _fold(self) -> None:
        """Add the buffered rows to the sums (and free the buffer if it is not full: the end)."""
        if not self.buffered:
            return
        x = self.buffer[: self.buffered]
        self.total += x.sum(0)
        if x.device.type == "cpu":
            rows = x.numpy()
            self.outer += torch.from_numpy(rows.T @ rows)
        else:
            self.outer.addmm_(x.T, x)
        if self.buffered < MOMENTS_FOLD_ROWS:
            self.buffer = None
        self.buffered = 0

    def merge(self, other: Moments) -> None:
        self._fold()
        other._fold()
        self.count += other.count
        self.total += other.total.to(self.total.device)
        self.outer += other.outer.to(self.outer.device)

    def to(self, device: torch.device | str) -> Moments:
        self._fold()
        return Moments(self.count, self.total.to(device), self.outer.to(device))

    def mean(self) -> np.ndarray:
        self._fold()
        return (self.total / self.count).cpu().numpy()

    def cov(self) -> np.ndarray:
        self._fold()
        if self.count < 2:
            raise UsageError(f"a covariance needs at least 2 feature vectors, got {self.count}")
        mu = self.total / self.count
        # (Σ x xᵀ − N μ μᵀ) / (N − 1), in place: the D×D temporaries are what this step costs
        sigma = torch.outer(mu, mu).mul_(-self.count).add_(self.outer).div_(self.count - 1)
        sigma = (sigma + sigma.T).div_(2)
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


def covariance_warning(distance: str, count: int, dim: int, whose: str = "samples") -> str | None:
    """Why ``distance`` computed from ``count`` vectors of ``dim`` features means little, or None.

    A covariance estimated from N vectors has rank at most N − 1: with N ≤ D it is singular, the
    square root in the distance works on a degenerate matrix, and the value mostly reflects how few
    vectors there were (docs/evaluate.md). More than D vectors is the least that makes the estimate full rank; the distance stays biased
    upwards at small N (by about a constant over N), so only distances from equal counts compare.
    """
    if count > dim:
        return None
    return (f"{distance} from {count} {whose}: no more than the {dim} features, so their covariance is "
            f"singular and the distance mostly reflects how few there are; use more than {dim}")


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


def _split_kl(logits: torch.Tensor, log_p: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``mean_i KL(p_i ‖ mean_j p_j)`` of one split, in the float64 buffers ``log_p`` and ``p``.

    ``log_p = (x − max) − log Σ exp(x − max)`` as ``log_softmax`` computes it; the KL as
    ``Σ p log p − p·log(mean p)``: two reductions instead of four temporaries. A class whose mean is
    0 has p = 0 in every row and adds nothing; ``0·log 0 = 0``.
    """
    log_p.copy_(logits)
    log_p.sub_(log_p.amax(1, keepdim=True))
    torch.exp(log_p, out=p)
    total = p.sum(1, keepdim=True)
    log_p.sub_(total.log())
    p.div_(total)
    mean = p.mean(0)
    log_mean = torch.where(mean > 0, mean.log(), 0.0)
    entropy = log_p.mul_(p).sum(1)  # Σ p log p per row (log_p is spent)
    if not bool(torch.isfinite(entropy).all()):  # a logit of −inf: 0·(−inf)
        entropy = log_p.nan_to_num_(nan=0.0).sum(1)
    return (entropy - p @ log_mean).mean()


def inception_score(logits: np.ndarray | torch.Tensor, split_size: int = IS_SPLIT_SIZE) -> float:
    """Mean over contiguous splits of ``exp(mean_i KL(p_i ‖ mean_j p_j))``, ``p = softmax(logits)``.

    ``logits`` are the unbiased Inception logits (pool3 · Wᵀ, no bias, 1008 classes). The last
    split holds the remainder, as ``range(0, N, split_size)`` in the original. Computed in float64
    (the original: float32) with ``0·log 0 = 0``.
    """
    logits = torch.as_tensor(logits)
    if logits.ndim != 2 or logits.shape[0] < 1:
        raise UsageError(f"inception_score needs [N, classes] logits, got {list(logits.shape)}")
    # two float64 buffers of one split, reused: fresh split-sized tensors per operation cost more
    # in page faults than in arithmetic
    log_p = torch.empty(min(split_size, logits.shape[0]), logits.shape[1], dtype=torch.float64)
    p = torch.empty_like(log_p)
    scores = []
    for begin in range(0, logits.shape[0], split_size):
        part = logits[begin : begin + split_size]
        kl = _split_kl(part, log_p[: len(part)], p[: len(part)])
        scores.append(float(torch.exp(kl)))
    return float(np.mean(scores))


# ------------------------------------------------------------------------------ precision / recall

PR_TILE_SIZE = 2500
"""Rows and columns of one tile: the unit of work inside a block (results do not depend on it)."""

FLOAT16_MAX = 65504.0


def _round16(x: torch.Tensor) -> torch.Tensor:
    """Round to float16 (overflow → inf) and back, as one float16 operation in TF would."""
    return x.half().float()


def _sq_norms16(x16: torch.Tensor) -> torch.Tensor:
    """``‖x‖²`` of float16-valued rows as TF's float16 graph: squares rounded, summed, the sum rounded."""
    return _round16(_round16(x16 * x16).sum(1))


def _finish16(product: torch.Tensor, norm_u: torch.Tensor, norm_v: torch.Tensor) -> torch.Tensor:
    """``max(‖u‖² − 2 u·v + ‖v‖², 0)`` from the float32 product, each operation rounded to float16.

    Works in float16 storage, in place: PyTorch's CPU and CUDA float16 arithmetic computes each
    operation in float32 and rounds the result, exactly the rounding emulated here (and half the
    memory traffic of rounding float32 tensors back and forth). Other backends may compute in
    float16 natively, so they round float32 results explicitly (a float32 tile).
    """
    if product.device.type not in ("cpu", "cuda"):
        prod2 = _round16(2 * _round16(product))
        return _round16(_round16(norm_u[:, None] - prod2) + norm_v[None, :]).clamp_min_(0)
    d = product.half()
    d.mul_(2)
    torch.sub(norm_u.half()[:, None], d, out=d)
    d.add_(norm_v.half()[None, :])
    return d.clamp_min_(0)


def _finish32(product: torch.Tensor, norm_u: torch.Tensor, norm_v: torch.Tensor) -> torch.Tensor:
    """The same in float32: ``(‖u‖² − 2 u·v) + ‖v‖²``, without temporaries."""
    d = product * -2
    return d.add_(norm_u[:, None]).add_(norm_v[None, :]).clamp_min_(0)


def _block_distances(u: torch.Tensor, v: torch.Tensor, fp16: bool) -> torch.Tensor:
    """One block as the original computes it: float16 (a float16 tensor) unless anything in the
    block is not finite, then float32 (a float32 tensor)."""
    u, v = u.float(), v.float()
    if fp16:
        u16, v16 = _round16(u), _round16(v)
        d = _finish16(u16 @ v16.T, _sq_norms16(u16), _sq_norms16(v16))
        if bool(torch.isfinite(d.max())):  # clamped: max is inf or NaN iff anything is
            return d
    return _finish32(u @ v.T, (u * u).sum(1), (v * v).sum(1))


def pairwise_sq_distances(u: torch.Tensor, v: torch.Tensor, fp16: bool = True) -> torch.Tensor:
    """``max(‖u‖² − 2 u·v + ‖v‖², 0)`` for all rows of ``u`` and ``v`` as float32 ``[len(u), len(v)]``.

    With ``fp16`` (the original's path) inputs, squares, norms, the product and each sum are
    rounded to float16 as TF's float16 graph does; if anything in the block is not finite, the
    block is computed again in float32. Accumulation inside the sums and the matrix product is
    float32 here (on GPUs TF accumulates float16 matmuls in float32 too).
    """
    return _block_distances(u, v, fp16).float()


def _blocks(n: int, size: int):
    for begin in range(0, n, size):
        yield begin, min(begin + size, n)


def _tiles(n: int, block_size: int, tile_size: int):
    """``(start, stop)`` tiles of at most ``tile_size`` that never straddle a block boundary."""
    for b0, b1 in _blocks(n, block_size):
        yield from ((b0 + t0, b0 + t1) for t0, t1 in _blocks(b1 - b0, tile_size))


@dataclass
class _FeatureSet:
    """One set of feature vectors with what every tile of distances needs of it, computed once."""

    x: torch.Tensor  # float32 [N, D], contiguous
    fp16: bool
    norms: torch.Tensor  # [N] float32: float16-rounded squared norms (fp16) or exact ones

    @classmethod
    def of(cls, features: torch.Tensor, fp16: bool) -> _FeatureSet:
        x = features.float().contiguous()
        norms = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
        for t0, t1 in _blocks(x.shape[0], PR_TILE_SIZE):  # never a rounded copy of the whole set
            xt = _round16(x[t0:t1]) if fp16 else x[t0:t1]
            norms[t0:t1] = _sq_norms16(xt) if fp16 else (xt * xt).sum(1)
        return cls(x, fp16, norms)

    def __len__(self) -> int:
        return self.x.shape[0]

    def operand(self, t0: int, t1: int) -> torch.Tensor:
        """Rows ``t0..t1`` ready for ``_product``: float16-rounded (fp16), in oneDNN's layout on the
        CPU when PyTorch has oneDNN (what TF's CPU matmul uses: on these tiles about twice as fast
        as PyTorch's default BLAS, docs/performance.md)."""
        x = _round16(self.x[t0:t1]) if self.fp16 else self.x[t0:t1]
        if x.device.type == "cpu" and torch.backends.mkldnn.is_available():
            return x.to_mkldnn()
        return x


def _product(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``u @ v.T`` in float32 (dense) of two ``_FeatureSet.operand``s."""
    return F.linear(u, v).to_dense() if u.is_mkldnn else u @ v.T


def _cannot_overflow16(*sets: _FeatureSet) -> bool:
    """Whether no float16 distance between these sets can overflow, so no block needs float32.

    Every squared distance is at most ``(‖u‖ + ‖v‖)² ≤ 4·max‖·‖²`` (a little more after rounding);
    with eight times the largest float16-rounded squared norm below float16's largest value,
    nothing in any block can be infinite, which is what the original checks block by block.
    Inputs that are not finite fail the test (a NaN maximum compares false).
    """
    return 8 * max(float(s.norms.max()) for s in sets) <= FLOAT16_MAX


def _distance_tiles(rows: _FeatureSet, cols: _FeatureSet | None, *, block_size: int):
    """Every squared distance between ``rows`` and ``cols`` (``None``: ``rows`` itself), as
    ``(row start, column start, tile)``, each entry exactly once, as the original's blocks of
    ``block_size`` give it (a float16 tile, or float32 where the original falls back).

    Tiles are small enough to keep the float16 rounding in the CPU's caches. Within one set the
    product of tiles i and j is computed once and serves both (i, j) and (j, i), nearly halving the
    multiplications. When a float16 overflow is possible, the original's block-by-block rule is
    followed verbatim instead.
    """
    symmetric = cols is None
    cols = rows if symmetric else cols
    if rows.fp16 and not _cannot_overflow16(rows, cols):
        for r0, r1 in _blocks(len(rows), block_size):
            for c0, c1 in _blocks(len(cols), block_size):
                yield r0, c0, _block_distances(rows.x[r0:r1], cols.x[c0:c1], fp16=True)
        return
    finish = _finish16 if rows.fp16 else _finish32
    row_tiles = list(_tiles(len(rows), block_size, PR_TILE_SIZE))
    col_tiles = row_tiles if symmetric else list(_tiles(len(cols), block_size, PR_TILE_SIZE))
    for i, (r0, r1) in enumerate(row_tiles):
        u = rows.operand(r0, r1)
        for c0, c1 in col_tiles[i:] if symmetric else col_tiles:
            product = _product(u, u if symmetric and c0 == r0 else cols.operand(c0, c1))
            yield r0, c0, finish(product, rows.norms[r0:r1], cols.norms[c0:c1])
            if symmetric and c0 != r0:  # the mirror tile, from the same product
                yield c0, r0, finish(product.T, cols.norms[c0:c1], rows.norms[r0:r1])


def _smallest(values: torch.Tensor, k: int) -> torch.Tensor:
    return torch.topk(values, min(k, values.shape[1]), dim=1, largest=False).values


def _radii(points: _FeatureSet, k: int, block_size: int) -> torch.Tensor:
    # the k+1 smallest distances seen so far per point, merged tile by tile
    best = torch.full((len(points), k + 1), float("inf"), dtype=torch.float32, device=points.x.device)
    for r0, _, d in _distance_tiles(points, None, block_size=block_size):
        r1 = r0 + d.shape[0]
        best[r0:r1] = _smallest(torch.cat([best[r0:r1], _smallest(d, k + 1).float()], dim=1), k + 1)
    return best[:, k].contiguous()


def _check_neighbourhood(n: int, k: int) -> None:
    if n <= k:
        raise UsageError(f"precision/recall with k={k} needs more than {k} images per set, got {n}")


def manifold_radii(
    features: torch.Tensor,
    k: int = PR_NEIGHBOURHOOD,
    *,
    fp16: bool = True,
    block_size: int = PR_BLOCK_SIZE,
) -> torch.Tensor:
    """The squared distance of each point to its (k+1)-th nearest point of the set, itself included."""
    _check_neighbourhood(features.shape[0], k)
    return _radii(_FeatureSet.of(features, fp16), k, block_size)


def _at_most16(radii: torch.Tensor) -> torch.Tensor:
    """The largest float16 ≤ each radius: for a float16 ``d``, ``d <= r`` iff ``d <= _at_most16(r)``
    (so comparisons run in float16, without converting the distances)."""
    r16 = radii.half()
    rounded_up = r16.float() > radii
    # radii are >= 0, where float16's bit patterns are in value order: one less is one step down
    return torch.where(rounded_up, (r16.view(torch.int16) - 1).view(torch.float16), r16)


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
    ref = _FeatureSet.of(torch.as_tensor(ref_features, device=device), fp16)
    smp = _FeatureSet.of(torch.as_tensor(sample_features, device=device), fp16)
    for points in (ref, smp):
        _check_neighbourhood(len(points), k)
    ref_radii, smp_radii = _radii(ref, k, block_size), _radii(smp, k, block_size)
    radii = {
        torch.float32: (ref_radii, smp_radii),
        torch.float16: (_at_most16(ref_radii), _at_most16(smp_radii)),
    }
    ref_in = torch.zeros(len(ref), dtype=torch.bool, device=ref.x.device)
    smp_in = torch.zeros(len(smp), dtype=torch.bool, device=ref.x.device)
    for r0, c0, d in _distance_tiles(ref, smp, block_size=block_size):
        r1, c1 = r0 + d.shape[0], c0 + d.shape[1]
        ref_r, smp_r = radii[d.dtype]
        ref_in[r0:r1] |= (d <= smp_r[None, c0:c1]).any(1)
        smp_in[c0:c1] |= (d <= ref_r[r0:r1, None]).any(0)
    return float(smp_in.double().mean()), float(ref_in.double().mean())
