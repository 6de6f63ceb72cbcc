"""Access to the reference vectors in ``../shared/golden`` (produced by the original code).

The directory is read in place, never copied. ``ADM_GOLDEN_DIR`` overrides the location.
When the directory is missing, parity tests are skipped, unless ``ADM_REQUIRE_GOLDEN=1``
(set by ``.ci/run``), in which case they fail: CI must never pass by skipping parity.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO_ROOT = Path(__file__).resolve().parents[1]


def golden_dir() -> Path:
    env = os.environ.get("ADM_GOLDEN_DIR")
    path = Path(env) if env else REPO_ROOT.parent / "shared" / "golden"
    if not (path / "index.json").is_file():
        if os.environ.get("ADM_REQUIRE_GOLDEN") == "1":
            raise FileNotFoundError(f"golden fixtures not found at {path}")
        pytest.skip(f"golden fixtures not found at {path} (set ADM_GOLDEN_DIR)")
    return path


@cache
def case(name: str) -> dict:
    """The case's JSON description (flags, constructor, tensors, tolerance)."""
    return json.loads((golden_dir() / f"{name}.json").read_text())


@cache
def io(name: str) -> dict[str, torch.Tensor]:
    """Inputs and expected outputs of a case."""
    return load_file(str(golden_dir() / f"{name}.io.safetensors"))


def weights(name: str) -> dict[str, torch.Tensor]:
    """The state_dict a case's model was run with (following ``weights_from``)."""
    files = case(name)["files"]
    return load_file(str(golden_dir() / files["weights"]))


def manifest(name: str) -> dict:
    return json.loads((golden_dir() / "manifests" / f"{name}.json").read_text())


def manifest_names() -> list[str]:
    return sorted(p.stem for p in (golden_dir() / "manifests").glob("*.json"))


def assert_forward_close(got: torch.Tensor, expected: torch.Tensor, rtol=1e-4, atol_std=1e-4):
    """The golden README's rule for fp32 forward passes: |d| <= atol + rtol*|exp|, atol = k*std(exp)."""
    got = got.detach().to(torch.float64).cpu()
    expected = expected.to(torch.float64)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    atol = atol_std * expected.std().item()
    err = (got - expected).abs()
    bound = atol + rtol * expected.abs()
    worst = (err / bound).max().item()
    assert worst <= 1.0, f"max error/tolerance = {worst:.3g} (max abs err {err.max().item():.3g})"


def assert_math_close(got: torch.Tensor, expected: torch.Tensor, rtol=1e-4, atol=1e-5):
    """The golden README's rule for closed-form diffusion maths; integer tensors exact."""
    got = got.detach().cpu()
    assert got.shape == expected.shape, (got.shape, expected.shape)
    if not expected.is_floating_point():
        assert torch.equal(got.to(expected.dtype), expected)
        return
    torch.testing.assert_close(got.to(torch.float64), expected.to(torch.float64), rtol=rtol, atol=atol)
