"""The original's model classes, accepting its constructor keywords, over ``adm.models``.

``UNetModel(..., use_new_attention_order=True, dims=2, use_fp16=False)`` builds an ``adm.models.UNet``
with the same state_dict. ``convert_to_fp16()`` switches the forward pass to float16 autocast
(weights stay float32, GroupNorm and softmax run in float32) instead of converting conv weights by
hand; the output is returned in the input's dtype, as the original does.
"""

from __future__ import annotations

import contextlib

import torch

from adm.models import NoisyClassifier, SuperResUNet, UNet


def _native(kwargs: dict) -> dict:
    """Original constructor keywords → adm.models keywords."""
    kwargs = dict(kwargs)
    dims = kwargs.pop("dims", 2)
    if dims != 2:
        raise ValueError(f"only 2-D models are supported (dims={dims})")
    kwargs.pop("use_fp16", None)
    kwargs["attention_order"] = "new" if kwargs.pop("use_new_attention_order", False) else "legacy"
    return kwargs


class _HalfPrecision:
    """``convert_to_fp16`` / ``convert_to_fp32`` as a switch for float16 autocast."""

    _fp16 = False

    def convert_to_fp16(self) -> None:
        self._fp16 = True

    def convert_to_fp32(self) -> None:
        self._fp16 = False

    def _precision(self, x: torch.Tensor):
        if not self._fp16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=x.device.type, dtype=torch.float16)


class UNetModel(_HalfPrecision, UNet):
    def __init__(self, image_size, in_channels, model_channels, out_channels, num_res_blocks, attention_resolutions, **kwargs):
        super().__init__(
            **_native(dict(kwargs, image_size=image_size, in_channels=in_channels, model_channels=model_channels,
                           out_channels=out_channels, num_res_blocks=num_res_blocks, attention_resolutions=attention_resolutions))
        )

    def forward(self, x, timesteps, y=None):
        with self._precision(x):
            return super().forward(x, timesteps, y).to(x.dtype)


class SuperResModel(_HalfPrecision, SuperResUNet):
    def __init__(self, image_size, in_channels, *args, **kwargs):
        names = ("model_channels", "out_channels", "num_res_blocks", "attention_resolutions")
        kwargs.update(zip(names, args, strict=False))
        super().__init__(**_native(dict(kwargs, image_size=image_size, in_channels=in_channels)))

    def forward(self, x, timesteps, low_res=None, **kwargs):
        if low_res is None:
            raise ValueError("SuperResModel needs low_res=")
        with self._precision(x):
            return super().forward(x, timesteps, low_res, kwargs.get("y")).to(x.dtype)


class EncoderUNetModel(_HalfPrecision, NoisyClassifier):
    def __init__(self, image_size, in_channels, model_channels, out_channels, num_res_blocks, attention_resolutions, **kwargs):
        kwargs.pop("num_heads_upsample", None)  # accepted and unused, as in the original
        super().__init__(
            **_native(dict(kwargs, image_size=image_size, in_channels=in_channels, model_channels=model_channels,
                           out_channels=out_channels, num_res_blocks=num_res_blocks, attention_resolutions=attention_resolutions))
        )

    def forward(self, x, timesteps):
        with self._precision(x):
            return super().forward(x, timesteps).to(x.dtype)
