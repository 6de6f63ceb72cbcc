"""What a flag set's network costs: parameters, FLOPs of a forward pass, seconds of a training step.

Parameters and FLOPs are facts of the flags: they are counted on the meta device (no weights,
no arithmetic), with torch's ``FlopCounterMode``, which counts the matrix products and
convolutions (a multiply-add is 2 FLOPs) and leaves out elementwise work (norms, activations),
small in FLOPs though not always in time. A training step's backward pass is about twice the
forward's work. Seconds are not a fact of the flags but of a machine at a moment, so they are
measured on demand (``time_training_step``), never stored here.

Importing this module loads no torch: ``adm presets`` lists the recorded counts without it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from adm.spec.flags import ClassifierFlags, ModelFlags, SuperResFlags, image_size

if TYPE_CHECKING:
    import torch
    from torch import nn

Network = ModelFlags | SuperResFlags | ClassifierFlags


@dataclass(frozen=True)
class NetworkCost:
    """A network's size and the work of one forward pass of one image."""

    params: int
    flops: int  # one forward pass, batch 1; a multiply-add counts 2

    @property
    def gflops(self) -> float:
        return self.flops / 1e9


def build_network(flags: Network, device: str | torch.device) -> nn.Module:
    """``adm.spec.factory.build_network``, imported when called (this module loads no torch)."""
    from adm.spec.factory import build_network as build

    return build(flags, device)


def example_inputs(net: nn.Module, flags: Network, batch: int, device: str | torch.device,
                   generator: torch.Generator | None = None) -> tuple[tuple, dict]:
    """Arguments of one call of ``net`` on a batch of random images (labels when it is
    class-conditional, the low-resolution image of an upsampler), drawn from ``generator``."""
    import torch

    def noise(channels: int, size: int) -> torch.Tensor:
        if torch.device(device).type == "meta":
            return torch.empty(batch, channels, size, size, device=device)
        return torch.randn(batch, channels, size, size, generator=generator, device=device)

    steps = getattr(flags, "diffusion_steps", 1000)
    if torch.device(device).type == "meta":
        timesteps = torch.empty(batch, dtype=torch.long, device=device)
    else:
        timesteps = torch.randint(0, steps, (batch,), generator=generator, device=device)
    if isinstance(flags, SuperResFlags):
        channels = net.in_channels // 2  # the network sees the image and the upsampled low-res one
        return (noise(channels, flags.large_size), timesteps, noise(channels, flags.small_size)), _labels(net, batch, device, generator)
    return (noise(net.in_channels, image_size(flags)), timesteps), _labels(net, batch, device, generator)


def _labels(net: nn.Module, batch: int, device, generator) -> dict:
    import torch

    classes = getattr(net, "num_classes", None)
    if not classes:
        return {}
    if torch.device(device).type == "meta":
        return {"y": torch.empty(batch, dtype=torch.long, device=device)}
    return {"y": torch.randint(0, classes, (batch,), generator=generator, device=device)}


def count_cost(flags: Network) -> NetworkCost:
    """Parameters and FLOPs of one forward pass of one image, counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    net = build_network(flags, "meta")
    args, kwargs = example_inputs(net, flags, 1, "meta")
    with FlopCounterMode(display=False) as counter:
        net(*args, **kwargs)
    return NetworkCost(params=sum(p.numel() for p in net.parameters()), flops=int(counter.get_total_flops()))


def time_training_step(flags: Network, batch_size: int = 1, *, warmup: int = 1, repeats: int = 2,
                       seed: int = 0) -> list[float]:
    """Wall-clock seconds of each of ``repeats`` training steps on the CPU, after ``warmup``.

    A step is what a training step spends on the network: forward (in training mode, so dropout
    runs), a loss, backward, an AdamW update. The diffusion loss itself (noising, the learned-Σ
    term) is elementwise work on one image-sized tensor, too small to change the figure. Weights
    and inputs are drawn from ``seed``; the global RNG (dropout's) is restored afterwards.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_network(flags, "meta").to_empty(device="cpu")
        with torch.no_grad():
            for param in net.parameters():  # the values do not matter, only that they are ordinary numbers
                param.normal_(0.0, 0.02, generator=generator)
        net.train()
        optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
        args, kwargs = example_inputs(net, flags, batch_size, "cpu", generator)
        seconds = []
        for index in range(warmup + repeats):
            start = time.perf_counter()
            net(*args, **kwargs).float().square().mean().backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if index >= warmup:
                seconds.append(time.perf_counter() - start)
    return seconds
