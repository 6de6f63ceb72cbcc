"""Where the bf16 CPU kernels' constants come from: Winograd against oneDNN, blocked attention against SDPA.

For every 3x3 convolution shape and attention map of a release network (found by running it once
with hooks), interleaved rounds after a warm-up time, in bf16 at the given batch size:

* oneDNN's direct convolution (channels_last, what ``winograd=False`` runs) against
  ``adm.models.winograd.winograd_conv3x3`` at several tile budgets (``TILE_BUDGET`` is the
  default), with each one's relative error against a float64 convolution;
* CPU flash attention (``F.scaled_dot_product_attention``) against ``blocked_attention``'s
  GEMM-softmax-GEMM at several query-row counts (``query_rows`` picks one per map).

The convolutions Winograd is not used for (``MIN_CHANNELS``) are listed too, to show why.

    python benchmarks/cpu_kernels.py --update-docs
    python benchmarks/cpu_kernels.py --model imagenet128 --batch 1 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

DOCS = Path(__file__).resolve().parents[1] / "docs"
BUDGETS = (256, 512, 1024)
ROWS = (64, 128, 192, 256, 384)


def shapes(preset: str, batch: int):
    """The distinct (C_in, C_out, H, W) of the 3x3 stride-1 convolutions (not the RGB input and
    output ones), and (T, C, heads) of the attention maps."""
    from adm.models import AttentionBlock
    from adm.presets import default_registry
    from adm.spec.factory import build_model

    flags = default_registry().preset(preset).model_flags
    net = build_model(flags).eval()
    convs, maps = {}, {}

    def on_conv(module, args, _out):
        if module.kernel_size == (3, 3) and module.stride == (1, 1) and min(module.in_channels, module.out_channels) >= 32:
            convs[(module.in_channels, module.out_channels, *args[0].shape[-2:])] = None

    def on_attention(module, args, _out):
        x = args[0]
        maps[(x.shape[-1] * x.shape[-2], x.shape[1], module.num_heads)] = None

    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(on_conv)
        elif isinstance(m, AttentionBlock):
            m.register_forward_hook(on_attention)
    size = getattr(flags, "large_size", None) or flags.image_size
    kwargs = {"y": torch.zeros(1, dtype=torch.long)} if flags.class_cond else {}
    if hasattr(flags, "small_size"):
        kwargs["low_res"] = torch.zeros(1, 3, flags.small_size, flags.small_size)
    with torch.inference_mode():
        net(torch.zeros(1, 3, size, size), torch.zeros(1), **kwargs)
    return sorted(convs, key=lambda s: (-s[2], s[0], s[1])), sorted(maps, reverse=True)


def interleaved(fns: dict, rounds: int) -> dict[str, float]:
    with torch.inference_mode():
        for fn in fns.values():
            fn()
        times = {name: [] for name in fns}
        for _ in range(rounds):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def relerr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b).norm() / b.norm())


def conv_rows(convs, batch: int, rounds: int, threads: int) -> list[str]:
    from adm.models import winograd

    lines = []
    for c_in, c_out, h, w in convs:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch, c_in, h, w, generator=g)
        weight = torch.randn(c_out, c_in, 3, 3, generator=g) / (9 * c_in) ** 0.5
        bias = torch.randn(c_out, generator=g)
        exact = F.conv2d(x.double(), weight.double(), bias.double(), padding=1)
        xb, wb, bb = x.bfloat16().to(memory_format=torch.channels_last), weight.bfloat16(), bias.bfloat16()
        wb = wb.to(memory_format=torch.channels_last)
        filters = winograd.winograd_weight(wb)
        fns = {"direct": partial(F.conv2d, xb, wb, bb, padding=1),
               **{b: partial(winograd.winograd_conv3x3, xb, filters, bb, b) for b in BUDGETS}}
        t = interleaved(fns, rounds)
        used = "yes" if max(c_in, c_out) >= winograd.MIN_CHANNELS else "no (too narrow)"
        with torch.inference_mode():
            errs = relerr(fns["direct"](), exact), relerr(fns[winograd.TILE_BUDGET](), exact)
        speedups = " | ".join(f"{t['direct'] / t[b]:.2f}x" for b in BUDGETS)
        lines.append(f"| {threads} | {c_in}→{c_out} | {h}x{w} | {t['direct'] * 1e3:.1f} | {speedups} | "
                     f"{errs[0]:.1e} / {errs[1]:.1e} | {used} |")
        print(lines[-1], flush=True)
    return lines


def attention_rows(maps, batch: int, rounds: int, threads: int) -> list[str]:
    from adm.models.blocked_attention import blocked_attention, query_rows

    lines = []
    for tokens, channels, heads in maps:
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(batch, tokens, heads, channels // heads, generator=g).transpose(1, 2).bfloat16()
                   for _ in range(3))
        rows = [r for r in ROWS if r < tokens] + [tokens]
        fns = {"flash": partial(F.scaled_dot_product_attention, q, k, v),
               **{r: partial(blocked_attention, q, k, v, rows=r) for r in rows}}
        t = interleaved(fns, rounds)
        cells = " ".join(f"{r}: {t['flash'] / t[r]:.2f}x" + ("*" if r == query_rows(tokens) else "") for r in rows)
        lines.append(f"| {threads} | {tokens} | {channels} / {heads} | {t['flash'] * 1e3:.1f} | {cells} |")
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="imagenet64", help="a preset of a release architecture")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", default="1,2", help="comma list of torch thread counts")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args()
    convs, maps = shapes(args.model, args.batch)
    conv_lines, attention_lines = [], []
    for threads in (int(n) for n in args.threads.split(",")):
        torch.set_num_threads(threads)
        conv_lines += conv_rows(convs, args.batch, args.rounds, threads)
        attention_lines += attention_rows(maps, args.batch, args.rounds, threads)
    from adm.models import winograd

    budgets = " | ".join(f"Winograd, {b} tiles" + (" (default)" if b == winograd.TILE_BUDGET else "") for b in BUDGETS)
    text = "\n".join([
        f"Machine: x86_64, torch {torch.__version__}, cpu; {args.model} shapes, batch {args.batch}, bf16, "
        f"median of {args.rounds} interleaved rounds after a warm-up. Speed-ups are over the first timed column.",
        "",
        f"| threads | channels | map | oneDNN direct ms | {budgets} | rel. error direct / Winograd | used |",
        "|---" * (6 + len(BUDGETS)) + "|",
        *conv_lines,
        "",
        "| threads | tokens | channels / heads | flash SDPA ms | blocked, by query rows (* = query_rows' choice) |",
        "|---|---|---|---|---|",
        *attention_lines,
    ])
    print(text)
    if args.update_docs:
        from report import replace_block

        replace_block(DOCS / "performance.md", "<!-- cpu-kernels:start -->", "<!-- cpu-kernels:end -->", text)


if __name__ == "__main__":
    main()
