"""Inception-v3 features in the evaluator's layout, through torch-fidelity's TF-compatible port.

One forward pass of torch-fidelity's ``FeatureExtractorInceptionV3`` (``inception-v3-compat``:
TF1 bilinear resize to 299 inside, ``(x − 128) / 128``, the 2015-12-05 graph's weights) gives

* ``pool``: pool3, 2048 values (FID, precision/recall);
* ``spatial``: the first 7 channels of ``Mixed_6d.branch1x1`` after its ReLU (TF ``mixed_6/conv``),
  flattened channels-last to 17·17·7 = 2023 values (sFID), taken with a forward hook;
* ``logits``: ``pool3 · Wᵀ`` without the fc bias, 1008 classes (Inception Score).

The weights always come from a local file (the ``inception`` artifact of the adm cache, or a path
the user gives): torch-fidelity only calls ``torch.hub`` when no path is passed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from adm.core.errors import CheckpointError, MissingFileError

FEATURE_EXTRACTOR = "inception-v3-compat"
POOL_DIM = 2048
SPATIAL_CHANNELS = 7
SPATIAL_DIM = 17 * 17 * SPATIAL_CHANNELS
NUM_LOGITS = 1008
INPUT_SIZE = 299


def spatial_features(mixed_6_conv: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` → the first 7 channels flattened channels-last: ``[B, H·W·7]`` (TF's NHWC order)."""
    sliced = mixed_6_conv[:, :SPATIAL_CHANNELS]
    return sliced.permute(0, 2, 3, 1).reshape(sliced.shape[0], -1)


@contextlib.contextmanager
def exact_fp32() -> Iterator[None]:
    """Full float32 matmuls and convolutions (no TF32, no bf16) inside; the previous settings after.

    Matmuls go through ``torch.set_float32_matmul_precision("highest")``, which sets PyTorch's
    legacy flag and the new per-backend ones together: cuBLAS refuses to run when the two
    disagree (torch ≥ 2.9). Convolutions: ``cudnn.conv.fp32_precision = "ieee"`` where that
    exists, else the legacy ``cudnn.allow_tf32 = False``.
    """
    backends = torch.backends
    conv = getattr(backends.cudnn, "conv", None)
    new_api = conv is not None and hasattr(backends.cuda.matmul, "fp32_precision")
    try:
        legacy = torch.get_float32_matmul_precision()
    except RuntimeError:  # the legacy and new flags disagree already; nothing sane to restore
        legacy = None
    if new_api:
        saved = (
            backends.cuda.matmul.fp32_precision,
            backends.mkldnn.matmul.fp32_precision,
            conv.fp32_precision,
        )
    else:
        saved_cudnn = backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    if new_api:
        conv.fp32_precision = "ieee"
    else:
        backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        if legacy is not None:
            torch.set_float32_matmul_precision(legacy)
        if new_api:
            backends.cuda.matmul.fp32_precision = saved[0]
            backends.mkldnn.matmul.fp32_precision = saved[1]
            conv.fp32_precision = saved[2]
        else:
            backends.cudnn.allow_tf32 = saved_cudnn


def check_weights_file(path: Path) -> None:
    """Refuse anything but a plain tensor state dict before torch-fidelity unpickles it."""
    if not path.is_file():
        raise MissingFileError(
            f"Inception weights {path} do not exist", "run `adm download inception`"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not a weights file"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path} is not a plain PyTorch state dict ({first[:200]})",
            "pass torch-fidelity's weights-inception-2015-12-05-6726825d.pth, or run `adm download inception`",
        ) from None
    if (
        not isinstance(state, dict)
        or "fc.weight" not in state
        or "Mixed_6d.branch1x1.conv.weight" not in state
    ):
        raise CheckpointError(
            f"{path} does not hold torch-fidelity's Inception-v3 weights",
            "run `adm download inception`",
        )
    fc = state["fc.weight"]
    if tuple(fc.shape) != (NUM_LOGITS, POOL_DIM):
        raise CheckpointError(
            f"{path}: fc.weight is {list(fc.shape)}, expected [{NUM_LOGITS}, {POOL_DIM}]"
        )


class InceptionFeatures(nn.Module):
    """uint8 images ``[B, 3, H, W]`` → ``(pool [B, 2048], spatial [B, 2023], logits [B, 1008])``, float32."""

    def __init__(self, extractor: nn.Module):
        super().__init__()
        self.extractor = extractor
        self._spatial: torch.Tensor | None = None
        extractor.Mixed_6d.branch1x1.register_forward_hook(self._keep_spatial)

    def _keep_spatial(self, module: nn.Module, inputs, output: torch.Tensor) -> None:
        self._spatial = spatial_features(output).float()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self._spatial = None
        pool, logits = self.extractor(images)
        spatial, self._spatial = self._spatial, None
        assert spatial is not None, "the Mixed_6d.branch1x1 hook did not run"
        return pool, spatial, logits


def load_inception(weights: str | Path, device: torch.device | str = "cpu") -> InceptionFeatures:
    """torch-fidelity's ``inception-v3-compat`` extractor with weights from ``weights``, on ``device``."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    path = Path(weights).expanduser()
    check_weights_file(path)
    try:
        extractor = FeatureExtractorInceptionV3(
            FEATURE_EXTRACTOR,
            ["2048", "logits_unbiased"],
            feature_extractor_weights_path=str(path),
        )
    except RuntimeError as err:  # load_state_dict: missing / unexpected keys, wrong shapes
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(
            f"{path} does not fit the Inception-v3 network ({first[:200]})"
        ) from None
    return InceptionFeatures(extractor).to(device).eval()
