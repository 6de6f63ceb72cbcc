"""The evaluator's metrics as pure functions, against independent computations and known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adm.core.errors import AdmError
from adm.evaluation.inception import SPATIAL_DIM, spatial_features
from adm.evaluation.stats import (
    Moments,
    frechet_distance,
    inception_score,
    manifold_radii,
    pairwise_sq_distances,
    precision_recall,
    trace_sqrt_product,
)


def _fid_by_eigenvalues(mu1, s1, mu2, s2, eps=0.0):
    """FID with tr sqrtm(Σ1Σ2) = Σ √λ(Σ1Σ2): another algorithm than the Schur square root."""
    eye = np.eye(len(mu1)) * eps
    lam = np.linalg.eigvals((s1 + eye) @ (s2 + eye))
    tr = np.sqrt(np.clip(lam.real, 0, None)).sum()
    diff = mu1 - mu2
    return diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr


def test_frechet_distance_matches_an_independent_computation():
    rng = np.random.default_rng(0)
    for d, n in [(8, 50), (64, 300)]:
        a = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
        b = rng.normal(size=(n, d)) * 1.5 + 0.3
        mu1, s1 = a.mean(0), np.cov(a, rowvar=False)
        mu2, s2 = b.mean(0), np.cov(b, rowvar=False)
        got = frechet_distance(mu1, s1, mu2, s2)
        assert got == pytest.approx(_fid_by_eigenvalues(mu1, s1, mu2, s2), rel=1e-9)
        assert trace_sqrt_product(s1, s2)[1] is False
    # identical Gaussians are at distance 0; a mean shift adds its squared norm
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-8)
    assert frechet_distance(mu1 + 2, s1, mu1, s1) == pytest.approx(4 * len(mu1), rel=1e-8)


def test_frechet_distance_falls_back_to_an_offset_for_singular_covariances():
    # degenerate covariances: data on a line (rank 1) and in a plane (rank 2)
    s1 = np.array([[0.0, 0, 0], [0, 1, 2], [0, 2, 4]])
    s2 = np.array([[2.0, -1, 2], [-1, 1, -1], [2, -1, 2]])
    mu1, mu2 = np.array([0.0, 1, 2]), np.array([1.0, 0, 0])
    _, offset = trace_sqrt_product(s1, s2)
    assert offset, "this pair must take the eps·I fallback"
    got = frechet_distance(mu1, s1, mu2, s2)
    want = _fid_by_eigenvalues(mu1, s1, mu2, s2, eps=1e-6)  # the offset enters the root only
    assert got == pytest.approx(want, rel=1e-6, abs=1e-6)


def test_frechet_distance_rejects_a_large_imaginary_part():
    eye = np.eye(4)
    with pytest.raises(AdmError, match="imaginary"):
        frechet_distance(np.zeros(4), eye, np.zeros(4), -eye)


def test_inception_score_known_values():
    classes = 1008
    assert inception_score(np.zeros((10, classes))) == pytest.approx(1.0, abs=1e-12)
    onehot = np.zeros((12, classes))
    onehot[np.arange(12), np.arange(12)] = 100.0  # 12 distinct, certain predictions
    assert inception_score(onehot) == pytest.approx(12.0, rel=1e-9)
    # contiguous splits of 5000, the last one holding the remainder: [1 class] and [10 classes]
    logits = np.zeros((7500, classes), np.float32)
    logits[:5000, 3] = 100.0
    logits[np.arange(5000, 7500), np.arange(2500) % 10] = 100.0
    assert inception_score(logits) == pytest.approx((1.0 + 10.0) / 2, rel=1e-9)
    assert inception_score(logits, split_size=7500) == pytest.approx(
        np.exp(-0.7 * np.log(0.7) - 9 * (1 / 30) * np.log(1 / 30)), rel=1e-9
    )


def test_pairwise_distances_emulate_float16_then_fall_back_to_float32():
    u = torch.tensor([[100.0], [0.0], [3.0]])
    v = torch.tensor([[101.0], [4.0]])
    d16 = pairwise_sq_distances(u, v, fp16=True)
    d32 = pairwise_sq_distances(u, v, fp16=False)
    assert d32.tolist() == [[1.0, 9216.0], [10201.0, 16.0], [9604.0, 1.0]]
    # TF's float16 graph: each operation rounded to float16
    h = np.float16
    norm_u, norm_v, dot = h(100) * h(100), h(101) * h(101), h(100) * h(101)
    expect = max(float(h(h(norm_u - h(2) * dot) + norm_v)), 0.0)
    assert d16[0, 0].item() == expect == 8.0
    # a block that overflows float16 (1000² > 65504) is computed in float32 as a whole
    big = pairwise_sq_distances(
        torch.tensor([[1000.0], [1.0]]), torch.tensor([[1001.0]]), fp16=True
    )
    assert big.tolist() == [[1.0], [1000000.0]]


def test_precision_recall_known_answer():
    dim = 5
    line = torch.zeros(10, dim)
    line[:, 0] = torch.arange(10.0)  # reference: 0, 1, …, 9 on a line
    samples = torch.zeros(10, dim)
    samples[:5, 0] = torch.arange(5.0)  # on reference points 0..4
    samples[5:, 0] = 1000 + torch.arange(5.0)  # far away (also overflows float16)
    # k=3 radii (squared, 4th nearest incl. self): ends 9, interior 4
    assert manifold_radii(line).tolist() == [9.0] + [4.0] * 8 + [9.0]
    # precision: 5 of 10 samples lie on the reference; recall: reference 0..7 lie within the radius
    # of sample 4 (radius 9: reference 7 is at exactly 9, ≤ counts), 8 and 9 do not
    for block in (3, 10_000):
        p, r = precision_recall(line, samples, block_size=block)
        assert (p, r) == (0.5, 0.8)
    assert precision_recall(samples, line) == (0.8, 0.5)  # the converse


def test_precision_recall_on_clouds_fp16_agrees_with_fp32():
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(300, 8, generator=g)
    smp = torch.rand(200, 8, generator=g) * 0.8 + 0.4  # overlapping, shifted clouds
    p16, r16 = precision_recall(ref, smp, block_size=128)
    p32, r32 = precision_recall(ref, smp, fp16=False, block_size=128)
    assert abs(p16 - p32) <= 0.02 and abs(r16 - r32) <= 0.02
    assert 0 < p32 < 1 and 0 < r32 < 1


def test_moments_equal_numpy_cov_and_merge():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(103, 17)) * 3 + 5
    a, b = Moments.zeros(17), Moments.zeros(17)
    for chunk in np.array_split(x[:60], 4):
        a.update(torch.from_numpy(chunk).float())
    b.update(torch.from_numpy(x[60:]).float())
    a.merge(b)
    x32 = x.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(a.mean(), x32.mean(0), rtol=1e-12)
    np.testing.assert_allclose(a.cov(), np.cov(x32, rowvar=False), rtol=1e-9, atol=1e-12)


def test_spatial_features_are_channels_last():
    b, c, h, w = 2, 192, 17, 17
    bi, ci, hi, wi = torch.meshgrid(
        torch.arange(b), torch.arange(c), torch.arange(h), torch.arange(w), indexing="ij"
    )
    code = (bi * 1_000_000 + ci * 10_000 + hi * 100 + wi).double()  # value names its position
    flat = spatial_features(code)
    assert flat.shape == (b, SPATIAL_DIM)
    for n, y, x, ch in [(0, 0, 0, 0), (0, 0, 0, 6), (0, 0, 1, 0), (1, 16, 16, 6), (1, 3, 5, 2)]:
        assert flat[n, (y * w + x) * 7 + ch].item() == n * 1_000_000 + ch * 10_000 + y * 100 + x
    # channels 7.. never appear
    assert ((flat % 1_000_000) // 10_000 < 7).all()
