"""The fast metric code gives the original evaluator's answers, however it is tiled or buffered.

Each metric is checked against a plain NumPy transcription of the original's algorithm written
here (whole blocks of float16 distances with the float32 fallback, ``np.partition`` radii,
``np.cov``, the float KL of each split). On small-integer features every order of summation is
exact, so the answers must be identical; on real-valued ones they may differ only where the order
of a float32 sum tips a float16 rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adm.evaluation import stats
from adm.evaluation.stats import Moments, inception_score, manifold_radii, precision_recall

# ------------------------------------------------------------------------------ the original's algorithm


def _distances(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """One block as TF's graph: float16 with each operation rounded, float32 if anything overflows."""
    h, f = np.float16, np.float32
    with np.errstate(over="ignore", invalid="ignore"):
        u16, v16 = u.astype(h), v.astype(h)
        norm_u = np.square(u16).astype(f).sum(1).astype(h)
        norm_v = np.square(v16).astype(f).sum(1).astype(h)
        product = (u16.astype(f) @ v16.astype(f).T).astype(h)
        d = np.maximum((norm_u[:, None] - h(2) * product) + norm_v[None, :], h(0))
    if np.isfinite(d).all():
        return d.astype(f)
    nu, nv = np.square(u).sum(1), np.square(v).sum(1)
    return np.maximum(nu[:, None] - 2 * (u @ v.T) + nv[None, :], 0)


def _blocks(n: int, size: int):
    return [(b, min(b + size, n)) for b in range(0, n, size)]


def _radii(x: np.ndarray, k: int, block: int) -> np.ndarray:
    rows = []
    for r0, r1 in _blocks(len(x), block):
        d = np.concatenate([_distances(x[r0:r1], x[c0:c1]) for c0, c1 in _blocks(len(x), block)], 1)
        rows.append(np.partition(d, k, axis=1)[:, k])
    return np.concatenate(rows)


def _precision_recall(ref: np.ndarray, smp: np.ndarray, k: int = 3, block: int = 10_000):
    ref_r, smp_r = _radii(ref, k, block), _radii(smp, k, block)
    ref_in, smp_in = np.zeros(len(ref), bool), np.zeros(len(smp), bool)
    for r0, r1 in _blocks(len(ref), block):
        for c0, c1 in _blocks(len(smp), block):
            d = _distances(ref[r0:r1], smp[c0:c1])
            ref_in[r0:r1] |= (d <= smp_r[None, c0:c1]).any(1)
            smp_in[c0:c1] |= (d <= ref_r[r0:r1, None]).any(0)
    return float(smp_in.mean()), float(ref_in.mean())


def _inception_score(logits: np.ndarray, split: int = 5000) -> float:
    scores = []
    for begin in range(0, len(logits), split):
        x = logits[begin : begin + split].astype(np.float64)
        p = np.exp(x - x.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        kl = (p * (np.log(p) - np.log(p.mean(0, keepdims=True)))).sum(1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores))


# ------------------------------------------------------------------------------ the checks


@pytest.fixture(params=[5, 64, 2500], ids=lambda t: f"tile{t}")
def tile(request, monkeypatch):
    """Tiles smaller than, straddling and larger than the test's blocks and sets."""
    monkeypatch.setattr(stats, "PR_TILE_SIZE", request.param)
    return request.param


def _integer_clouds(seed: int, shift: int = 0):
    g = np.random.default_rng(seed)
    ref = g.integers(0, 4, size=(157, 24)).astype(np.float32)
    smp = (g.integers(0, 4, size=(121, 24)) + shift * (g.random((121, 24)) < 0.2)).astype(np.float32)
    return ref, smp


@pytest.mark.parametrize("block", [40, 10_000])
def test_precision_recall_is_the_originals_exactly_on_integer_features(tile, block):
    ref, smp = _integer_clouds(0, shift=1)
    for k in (1, 3):
        got = manifold_radii(torch.from_numpy(ref), k, block_size=block).numpy()
        np.testing.assert_array_equal(got, _radii(ref, k, block))
    want = _precision_recall(ref, smp, block=block)
    assert 0 < want[0] < 1 and 0 < want[1] < 1
    assert precision_recall(ref, smp, block_size=block) == want
    assert precision_recall(smp, ref, block_size=block) == _precision_recall(smp, ref, block=block)


def test_float16_overflow_blocks_fall_back_as_the_originals(tile):
    ref, smp = _integer_clouds(1)
    smp[:7] += 300.0  # squared distances past float16's 65504 in some blocks only
    ref[-3:] += 150.0
    for block in (16, 50, 10_000):
        assert precision_recall(ref, smp, block_size=block) == _precision_recall(ref, smp, block=block)
        got = manifold_radii(torch.from_numpy(smp), block_size=block).numpy()
        np.testing.assert_array_equal(got, _radii(smp, 3, block))


def test_a_float32_radius_is_compared_exactly_with_float16_distances(tile):
    # pairs at ±150 on a third axis are 300 apart: the reference's own block overflows float16, so
    # its radii are float32; the cross block does not, so its distances are float16
    ref = np.array([[0, 0, 0], [0.3, 0, 0], [0, 0.3, 0], [-0.3, 0, 0],
                    [0, 0, 150], [0, 0, 150.5], [0, 0, -150], [0, 0, -150.5]], np.float32)
    smp = np.array([[0, -0.30005, 0], [5, 5, 0]], np.float32)
    radius = _radii(ref, 1, 10_000)[0]  # 0.3² in float32
    assert np.float32(np.float16(radius)) > radius  # float16 would round it up...
    d = _distances(ref[:1], smp[:1])[0, 0]
    assert d > radius and d == np.float32(np.float16(radius))  # ...onto this sample's distance
    assert _precision_recall(ref, smp, k=1)[0] == 0.0
    assert precision_recall(ref, smp, k=1) == _precision_recall(ref, smp, k=1)


def test_precision_recall_on_real_valued_features_matches_the_original(tile):
    g = np.random.default_rng(2)
    centres = g.gamma(0.6, 0.5, size=(12, 64))
    ref = np.maximum(centres[g.integers(0, 12, 600)] + g.normal(size=(600, 64)) * 0.2, 0).astype(np.float32)
    smp = np.maximum(centres[g.integers(0, 12, 500)] * 0.9 + g.normal(size=(500, 64)) * 0.3, 0).astype(np.float32)
    want = _precision_recall(ref, smp)
    got = precision_recall(ref, smp)
    # only a float32 sum's order differs: a point or two may tip
    assert abs(got[0] - want[0]) <= 2 / len(smp) and abs(got[1] - want[1]) <= 2 / len(ref)
    radii = manifold_radii(torch.from_numpy(ref)).numpy()
    assert np.mean(radii == _radii(ref, 3, 10_000)) > 0.98


def test_float32_distances_match_numpy(tile):
    g = np.random.default_rng(3)
    ref, smp = g.normal(size=(90, 16)).astype(np.float32), g.normal(size=(70, 16)).astype(np.float32)
    d = ((ref[:, None, :].astype(np.float64) - ref[None, :, :]) ** 2).sum(-1)
    want = np.partition(d, 3, axis=1)[:, 3]
    np.testing.assert_allclose(manifold_radii(torch.from_numpy(ref), fp16=False).numpy(), want, rtol=1e-5)
    assert 0 < precision_recall(ref, smp, fp16=False)[0] < 1


def test_streamed_moments_equal_numpy_cov_across_folds(monkeypatch):
    monkeypatch.setattr(stats, "MOMENTS_FOLD_ROWS", 100)  # many folds, batches straddling them
    g = np.random.default_rng(4)
    x = (np.maximum(g.normal(size=(1037, 33)) + 0.5, 0) * 3).astype(np.float32)
    a, b = Moments.zeros(33), Moments.zeros(33)
    for begin in range(0, 700, 64):
        a.update(torch.from_numpy(x[begin : min(begin + 64, 700)]))
    b.update(torch.from_numpy(x[700:]))  # one batch of 337: three folds and a remainder
    assert (a.count, b.count) == (700, 337)
    a.merge(b.to("cpu"))  # as gathering ranks' shares does
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(a.mean(), x64.mean(0), rtol=1e-13)
    np.testing.assert_allclose(a.cov(), np.cov(x64, rowvar=False), rtol=1e-10, atol=1e-12)
    a.update(torch.from_numpy(x[:10]))  # still usable after reading the statistics
    assert a.count == 1047


def test_moments_do_not_keep_the_callers_tensor():
    x = torch.ones(8, 5)
    m = Moments.zeros(5)
    m.update(x)
    x.fill_(100.0)  # a reused batch buffer
    np.testing.assert_array_equal(m.mean(), np.ones(5))


def test_inception_score_matches_the_originals_formula():
    g = np.random.default_rng(5)
    for scale in (0.5, 4.0, 40.0):
        logits = (g.normal(size=(7300, 1008)) * scale).astype(np.float32)
        assert inception_score(logits) == pytest.approx(_inception_score(logits), rel=1e-12)
    # a class no sample gives any probability, and a logit of −inf: 0·log 0 = 0
    logits = np.zeros((6, 1008), np.float32)
    logits[:, 0] = -np.inf
    logits[np.arange(6), np.arange(1, 7)] = 50.0
    assert inception_score(logits) == pytest.approx(6.0, rel=1e-12)
