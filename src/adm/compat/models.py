"""The original's model classes, accepting its constructor arguments, over ``adm.models``.

``UNetModel(..., use_new_attention_order=True, dims=2, use_fp16=False)`` builds an ``adm.models.UNet``
with the same state_dict. Arguments bind as the original's do (positionally in its order, too),
and the instance keeps them as attributes under the original's names (``num_res_blocks``,
``channel_mult``, ``dtype``, ...), which forks that override ``forward`` read.
``convert_to_fp16()`` switches the forward pass to float16 autocast (weights stay float32,
GroupNorm and softmax run in float32) instead of converting conv weights by hand; the output is
returned in the input's dtype, as the original does. So ``dtype`` is always ``torch.float32``:
the dtype of the weights, which is what a fork's ``x.type(self.dtype)`` needs.
"""

from __future__ import annotations

import contextlib
import inspect

import torch

from adm.models import NoisyClassifier, SuperResUNet, UNet

# The original's arguments adm.models does not take as they are (checked, translated or unused).
_NOT_ADM = ("dims", "use_fp16", "use_new_attention_order", "num_heads_upsample")


def _native(original: dict, *, keep_heads_upsample: bool = True) -> dict:
    """The original's constructor arguments -> adm.models keywords."""
    if original.get("dims", 2) != 2:
        raise ValueError(f"only 2-D models are supported (dims={original['dims']})")
    kwargs = {k: v for k, v in original.items() if k not in _NOT_ADM}
    kwargs["attention_order"] = "new" if original.get("use_new_attention_order") else "legacy"
    if keep_heads_upsample and "num_heads_upsample" in original:
        kwargs["num_heads_upsample"] = original["num_heads_upsample"]
    return kwargs


def _bind(init, *args, **kwargs) -> dict:
    """Bind arguments as the original's ``__init__`` would: every argument by name, defaults filled."""
    bound = inspect.signature(init).bind(None, *args, **kwargs)
    bound.apply_defaults()
    return {k: v for k, v in bound.arguments.items() if k != "self"}


class _HalfPrecision:
    """``convert_to_fp16`` / ``convert_to_fp32`` as a switch for float16 autocast."""

    _fp16 = False
    dtype = torch.float32  # the weights' dtype, which never changes (see the module docstring)

    def convert_to_fp16(self) -> None:
        self._fp16 = True

    def convert_to_fp32(self) -> None:
        self._fp16 = False

    def _precision(self, x: torch.Tensor):
        if not self._fp16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=x.device.type, dtype=torch.float16)

    def _remember(self, original: dict) -> None:
        """Keep the original's constructor arguments as attributes, as its classes do."""
        for name, value in original.items():
            if name not in ("dims", "use_fp16", "use_new_attention_order", "in_channels"):
                setattr(self, name, value)  # in_channels: adm's value (doubled for SuperResModel)
        if original.get("num_heads_upsample") == -1:
            self.num_heads_upsample = original["num_heads"]


class UNetModel(_HalfPrecision, UNet):
    def __init__(
        self, image_size, in_channels, model_channels, out_channels, num_res_blocks, attention_resolutions,
        dropout=0, channel_mult=(1, 2, 4, 8), conv_resample=True, dims=2, num_classes=None,
        use_checkpoint=False, use_fp16=False, num_heads=1, num_head_channels=-1, num_heads_upsample=-1,
        use_scale_shift_norm=False, resblock_updown=False, use_new_attention_order=False,
    ):
        original = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        super().__init__(**_native(original))
        self._remember(original)

    def forward(self, x, timesteps, y=None):
        with self._precision(x):
            return super().forward(x, timesteps, y).to(x.dtype)


class SuperResModel(_HalfPrecision, SuperResUNet):
    def __init__(self, image_size, in_channels, *args, **kwargs):
        original = _bind(UNetModel.__init__, image_size, in_channels, *args, **kwargs)
        super().__init__(**_native(original))
        self._remember(original)

    def forward(self, x, timesteps, low_res=None, **kwargs):
        if low_res is None:
            raise ValueError("SuperResModel needs low_res=")
        with self._precision(x):
            return super().forward(x, timesteps, low_res, kwargs.get("y")).to(x.dtype)


class EncoderUNetModel(_HalfPrecision, NoisyClassifier):
    def __init__(
        self, image_size, in_channels, model_channels, out_channels, num_res_blocks, attention_resolutions,
        dropout=0, channel_mult=(1, 2, 4, 8), conv_resample=True, dims=2, use_checkpoint=False,
        use_fp16=False, num_heads=1, num_head_channels=-1, num_heads_upsample=-1,
        use_scale_shift_norm=False, resblock_updown=False, use_new_attention_order=False, pool="adaptive",
    ):
        original = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        # num_heads_upsample is accepted and unused, as in the original (there is no decoder).
        super().__init__(**_native(original, keep_heads_upsample=False))
        self._remember(original)

    def forward(self, x, timesteps):
        with self._precision(x):
            return super().forward(x, timesteps).to(x.dtype)
