"""Network forward latency of the release architectures: adm against the original guided-diffusion.

For each model and batch size, the same random weights are loaded into adm's network and (with
``--original PATH`` to an extracted openai/guided-diffusion checkout, never committed here) into
the original's, and each variant's forward is timed, interleaved over ``--repeats`` rounds after a
warm-up (median kept), so every ratio is from the same run:

* ``original fp32`` (the baseline), ``original bf16`` (plain ``torch.autocast``);
* ``adm fp32`` (the networks as built), ``adm fp32 optimized`` (``optimize_for_inference``:
  channels_last on the CPU);
* ``adm bf16 autocast`` (as built, plain autocast), ``adm bf16 optimized`` (reduced-precision trunk
  + channels_last, no autocast, on the CPU Winograd convolutions and blocked attention: what
  ``adm sample --precision bf16`` runs), fp16 likewise on CUDA; on the CPU also ``adm bf16
  optimized, direct conv`` (the same without Winograd: oneDNN's convolutions).

Also reported: the output's relative error ‖out − ref‖/‖ref‖ against the original's fp32 output,
achieved GFLOP/s (FLOPs counted with ``torch.utils.flop_counter``) beside the machine's measured
matmul peak, and with ``--memory`` the peak memory of each variant (a fresh process per variant
on the CPU, built without transient copies: the process's peak RSS, runtime and weights included,
the same for every variant; ``torch.cuda.max_memory_allocated`` on CUDA).

    python benchmarks/forward_latency.py --original /tmp/gd --update-docs
    python benchmarks/forward_latency.py --original /tmp/gd --models all --batch-sizes 1 --repeats 2
    python benchmarks/forward_latency.py --device cuda --precisions fp32,bf16,fp16
    python benchmarks/forward_latency.py --original /tmp/gd --batch-sizes 4 --compile --marker forward-latency-compile
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

MODELS = {  # preset: what it is (one per distinct release architecture)
    "imagenet64": "ImageNet 64, cond",
    "imagenet128": "ImageNet 128, cond",
    "imagenet256": "ImageNet 256, cond (uncond: same net)",
    "imagenet512": "ImageNet 512, cond",
    "upsample-64-256": "64→256 upsampler",
    "upsample-128-512": "128→512 upsampler",
    "lsun-bedroom": "LSUN 256 (all LSUN nets)",
}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
DOCS = Path(__file__).resolve().parents[1] / "docs"


def flags_of(preset: str):
    from adm.presets import default_registry

    return default_registry().preset(preset).model_flags


def original_network(flags, path: Path):
    """The original's network for ``flags``, built from its own source at ``path``."""
    sys.path.insert(0, str(path))
    from guided_diffusion import script_util

    from adm.spec.flags import SuperResFlags

    given = {**flags.flag_dict(), "use_fp16": False}  # reduced precision is autocast, for both
    if isinstance(flags, SuperResFlags):
        defaults, make = script_util.sr_model_and_diffusion_defaults(), script_util.sr_create_model_and_diffusion
    else:
        defaults, make = script_util.model_and_diffusion_defaults(), script_util.create_model_and_diffusion
    model, _ = make(**{k: given[k] for k in defaults})
    return model.eval()


def inputs(flags, batch: int, device):
    from adm.spec.flags import SuperResFlags

    g = torch.Generator().manual_seed(1)
    size = flags.large_size if isinstance(flags, SuperResFlags) else flags.image_size
    x = torch.randn(batch, 3, size, size, generator=g)
    kwargs = {"y": torch.randint(0, flags.num_classes, (batch,), generator=g)} if flags.class_cond else {}
    if isinstance(flags, SuperResFlags):
        kwargs["low_res"] = torch.randn(batch, 3, flags.small_size, flags.small_size, generator=g)
    t = torch.randint(0, flags.diffusion_steps, (batch,), generator=g).float()
    return x.to(device), t.to(device), {k: v.to(device) for k, v in kwargs.items()}


def variants(adm_net, original, device, precisions, compile_=False):
    """name → (network, autocast dtype or None)."""
    import copy

    from adm.models import optimize_for_inference

    found = {}
    if original is not None:
        found["original fp32"] = (original, None)
    found["adm fp32"] = (adm_net, None)
    found["adm fp32 optimized"] = (optimize_for_inference(copy.deepcopy(adm_net)), None)
    for name in precisions:
        if name == "fp32":
            continue
        dtype = DTYPES[name]
        if original is not None:
            found[f"original {name}"] = (original, dtype)
        found[f"adm {name} autocast"] = (adm_net, dtype)
        found[f"adm {name} optimized"] = (optimize_for_inference(copy.deepcopy(adm_net), dtype=dtype), None)
        if dtype is torch.bfloat16 and device.type == "cpu":  # what the Winograd convolutions buy
            found["adm bf16 optimized, direct conv"] = (
                optimize_for_inference(copy.deepcopy(adm_net), dtype=dtype, winograd=False), None)
        if compile_:  # what `adm sample --precision NAME --compile` runs (compiled in the warm-up)
            found[f"adm {name} optimized + compile"] = (torch.compile(found[f"adm {name} optimized"][0]), None)
    return found


def forward(net, autocast, x, t, kwargs, device):
    context = torch.autocast(device.type, dtype=autocast) if autocast is not None else nullcontext()
    with torch.inference_mode(), context:
        out = net(x, t, **kwargs)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out


def build(preset: str, device, original_path: Path | None):
    from adm.spec.factory import build_model

    flags = flags_of(preset)
    torch.manual_seed(0)
    adm_net = build_model(flags).eval()
    state = adm_net.state_dict()
    for value in state.values():  # random weights everywhere (a fresh net has zeroed output convs)
        if value.is_floating_point():
            value.normal_(0, 0.02 if value.ndim > 1 else 0.1)
    adm_net.load_state_dict(state)
    original = None
    if original_path is not None:
        original = original_network(flags, original_path)
        original.load_state_dict(state, strict=True)
        original.to(device)
    return flags, adm_net.to(device), original


def matmul_peak(dtype: torch.dtype, device) -> float:
    """GFLOP/s of a 2048³ matmul (a practical ceiling for this machine and thread count)."""
    a = torch.randn(2048, 2048, device=device, dtype=dtype)
    b = torch.randn(2048, 2048, device=device, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(3):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 3 * 2 * 2048**3 / (time.perf_counter() - start) / 1e9


def count_flops(net, x, t, kwargs) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x, t, **kwargs)
    return counter.get_total_flops()


def peak_memory(preset: str, batch: int, variant: str, args) -> float | None:
    """MiB a variant's forward adds to its process (a fresh one on the CPU)."""
    command = [sys.executable, __file__, "--_memory-probe", json.dumps([preset, batch, variant]),
               "--device", args.device, "--precisions", args.precisions]
    if args.original:
        command += ["--original", str(args.original)]
    done = subprocess.run(command, capture_output=True, text=True)
    return float(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None


def _memory_probe(spec: str, args) -> None:
    """One variant alone in this process: build it without transient copies, run it once, print the
    process's peak memory in MiB (on the CPU the peak RSS: runtime, weights, activations, workspace;
    comparable across variants because every probe pays the same runtime)."""
    from adm.models import optimize_for_inference
    from adm.spec.factory import build_model

    preset, batch, variant = json.loads(spec)
    device = torch.device(args.device)
    flags = flags_of(preset)
    if variant.startswith("original"):
        net = original_network(flags, args.original).to(device)
    else:
        net = build_model(flags, device="meta").to_empty(device=device).eval()
        with torch.no_grad():
            for value in net.parameters():
                value.normal_(0, 0.02)
        if "optimized" in variant:
            dtype = next((DTYPES[p] for p in DTYPES if p in variant), None)
            optimize_for_inference(net, dtype=dtype, winograd=False if "direct conv" in variant else None)
    autocast = next((DTYPES[p] for p in DTYPES if p in variant), None) if "optimized" not in variant else None
    x, t, kwargs = inputs(flags, batch, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    forward(net, autocast, x, t, kwargs, device)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else _high_water_mark()
    print(peak / 2**20)


def _high_water_mark() -> int:
    """This process's peak RSS in bytes. ``/proc/self/status`` VmHWM where there is one: after
    fork + exec, ``getrusage``'s ru_maxrss still reports the parent's peak on Linux."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(preset: str, batch: int, args) -> list[dict]:
    device = torch.device(args.device)
    flags, adm_net, original = build(preset, device, args.original)
    x, t, kwargs = inputs(flags, batch, device)
    found = variants(adm_net, original, device, args.precisions.split(","), args.compile)
    reference = forward(*(found.get("original fp32") or found["adm fp32"]), x, t, kwargs, device).float()
    errors = {}
    for name, (net, autocast) in found.items():
        out = forward(net, autocast, x, t, kwargs, device).float()  # also the warm-up
        errors[name] = float((out - reference).norm() / reference.norm())
    times = {name: [] for name in found}
    for _ in range(args.repeats):
        for name, (net, autocast) in found.items():
            start = time.perf_counter()
            forward(net, autocast, x, t, kwargs, device)
            times[name].append(time.perf_counter() - start)
    flops = count_flops(adm_net, x, t, kwargs)
    rows = []
    for name in found:
        seconds = statistics.median(times[name])
        rows.append({"model": preset, "batch": batch, "variant": name, "seconds": seconds, "relerr": errors[name],
                     "gflops": flops / seconds / 1e9, "threads": torch.get_num_threads(),
                     "memory_mib": peak_memory(preset, batch, name, args) if args.memory else None})
    return rows


def table(rows: list[dict], peaks: dict[str, float]) -> str:
    lines = ["| model | batch | threads | variant | ms / forward | vs original fp32 | vs original, same precision | "
             "rel. error vs original fp32 | GFLOP/s | process peak MiB |", "|---" * 10 + "|"]

    def ratio(base: dict | None, row: dict) -> str:
        return f"{base['seconds'] / row['seconds']:.2f}x" if base else "–"

    for r in rows:
        by = {x["variant"]: x for x in rows if (x["model"], x["batch"], x["threads"]) == (r["model"], r["batch"], r["threads"])}
        precision = next((p for p in ("bf16", "fp16") if p in r["variant"]), "fp32")
        memory = f"{r['memory_mib']:.0f}" if r["memory_mib"] is not None else "–"
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['threads']} | {r['variant']} | {r['seconds'] * 1000:.0f} | "
            f"{ratio(by.get('original fp32'), r)} | {ratio(by.get(f'original {precision}'), r)} | {r['relerr']:.1e} | "
            f"{r['gflops']:.0f} | {memory} |"
        )
    peak_text = ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items())
    return "\n".join(lines) + f"\n\nMeasured 2048³ matmul peak on this machine: {peak_text}."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--original", type=Path, help="an extracted openai/guided-diffusion checkout (not committed)")
    parser.add_argument("--models", default="imagenet64", help="comma list of presets, or 'all'")
    parser.add_argument("--batch-sizes", default="1,4")
    parser.add_argument("--threads", default="1,2", help="comma list of torch thread counts")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--memory", action="store_true", help="also measure peak memory (a process per variant)")
    parser.add_argument("--compile", action="store_true", help="also time the optimized networks under torch.compile")
    parser.add_argument("--update-docs", action="store_true")
    parser.add_argument("--marker", default="forward-latency", help="the docs/performance.md block to write")
    parser.add_argument("--_memory-probe", dest="memory_probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        _memory_probe(args.memory_probe, args)
        return
    models = list(MODELS) if args.models == "all" else args.models.split(",")
    rows, peaks = [], {}
    device = torch.device(args.device)
    for threads in (int(n) for n in args.threads.split(",")):
        torch.set_num_threads(threads)
        peaks[f"fp32 ({threads} thr)"] = matmul_peak(torch.float32, device)
        peaks[f"bf16 ({threads} thr)"] = matmul_peak(torch.bfloat16, device)
        for preset in models:
            for batch in (int(b) for b in args.batch_sizes.split(",")):
                rows += measure(preset, batch, args)
                print(json.dumps(rows[-1]), flush=True)
    text = (f"Machine: {platform.machine()}, {platform.processor() or 'CPU'}, torch {torch.__version__}, "
            f"device {args.device}; median of {args.repeats} interleaved rounds after a warm-up.\n\n" + table(rows, peaks))
    print(text)
    if args.update_docs:
        from report import line_chart, replace_block

        replace_block(DOCS / "performance.md", f"<!-- {args.marker}:start -->", f"<!-- {args.marker}:end -->", text)
        if args.marker != "forward-latency":
            return
        series = {}
        for r in rows:
            if r["model"] == models[0] and r["threads"] == torch.get_num_threads():
                series.setdefault(r["variant"], []).append((r["batch"], r["seconds"] * 1000 / r["batch"]))
        line_chart(series, DOCS / "performance" / "forward.png", title=f"{models[0]} forward, {torch.get_num_threads()} thread(s)",
                   xlabel="batch size", ylabel="ms per image", log_y=True)


if __name__ == "__main__":
    main()
