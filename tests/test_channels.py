"""Data beyond RGB (issue 25, item 4): grayscale and N-channel images train, sample and evaluate.

Grayscale PNGs (8 and 16 bit), TIFFs and ``.npy`` arrays in a folder, and npz arrays of any
channel count, train a tiny model through `adm train`; the network's channel count comes from
the data and is recorded in config.json; `adm sample --run-dir` writes NHWC samples with those
channels and a PNG grid of the matching mode; `adm evaluate` scores what it can read and refuses
the rest in one line. RGB networks keep their keys and shapes.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from adm.cli.main import app
from adm.core.errors import UsageError
from adm.data.crops import center_crop
from adm.data.images import open_images
from adm.data.stored import probe, read_stored
from adm.presets import default_registry
from adm.spec.factory import build_model, unet_kwargs
from adm.spec.flags import parse_model_flags
from adm.training.data import (
    Augment,
    SampleOrder,
    StreamDataset,
    collate,
    open_source,
    to_model_input,
)
from tiny import MODEL_FLAGS, UPSAMPLER_FLAGS, randomize

FAST = ["--iterations", "2", "--batch-size", "4", "--save-every", "2", "--device", "cpu", "--workers", "0"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def ok(*args):
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result


def refused(*args) -> str:
    """The one-line error of a refused command (exit 2, no traceback)."""
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def png16(path: Path, pixels: np.ndarray) -> Path:
    """A 16-bit PNG of ``[H, W, C]`` pixels (C = 1 grey, 2 grey + alpha), written by hand: PIL
    writes no 16-bit grey + alpha."""
    h, w, c = pixels.shape
    rows = b"".join(b"\0" + pixels[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 2: 4}[c], 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return path


def shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


def samples_of(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as data:
        return data["arr_0"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Training sets of 8 16x16 images in two classes (file-name prefixes 0_ and 1_)."""
    root = tmp_path_factory.mktemp("channels")
    rng = np.random.default_rng(0)
    found = {name: root / name for name in ("gray8", "gray16", "npy16")}
    for folder in found.values():
        folder.mkdir()
    for i in range(8):
        grey = rng.integers(0, 256, (16, 16), dtype=np.uint8)
        Image.fromarray(grey).save(found["gray8"] / f"{i % 2}_{i}.png")
        Image.fromarray(grey.astype(np.uint16) * 257).save(found["gray16"] / f"{i % 2}_{i}.png")
        np.save(found["npy16"] / f"{i % 2}_{i}.npy", grey.astype(np.uint16) * 257)
    found["rgba.npz"] = root / "rgba.npz"
    np.savez(found["rgba.npz"], arr_0=rng.integers(0, 256, (8, 16, 16, 4), dtype=np.uint8), arr_1=np.arange(8) % 2)
    found["five.npz"] = root / "five.npz"
    np.savez(found["five.npz"], arr_0=rng.random((8, 16, 16, 5), dtype=np.float32))
    found["nhw.npz"] = root / "nhw.npz"
    np.savez(found["nhw.npz"], arr_0=rng.integers(0, 65536, (8, 16, 16), dtype=np.uint16))
    return found


@pytest.fixture(scope="module")
def gray_run(data, tmp_path_factory):
    """A class-conditional tiny model trained two steps on the 8-bit grayscale PNGs."""
    run = tmp_path_factory.mktemp("runs") / "gray"
    ok("train", "--preset", "tiny-cond", "--data", data["gray8"], "--run-dir", run, *FAST)
    return run


# ---- reading ------------------------------------------------------------------------------


def test_files_are_read_with_their_channels_and_bit_depth(tmp_path):
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (6, 5), dtype=np.uint8)
    deep = rng.integers(0, 65536, (6, 5), dtype=np.uint16)
    unit = rng.random((6, 5), dtype=np.float32)
    cases = {
        "l.png": (Image.fromarray(grey), grey[..., None]),
        "la.png": (Image.fromarray(np.stack([grey, 255 - grey], -1)), np.stack([grey, 255 - grey], -1)),
        "rgba.png": (Image.fromarray(np.stack([grey] * 4, -1)), np.stack([grey] * 4, -1)),
        "i16.png": (Image.fromarray(deep), deep[..., None]),
        "l.tif": (Image.fromarray(grey), grey[..., None]),
        "i16.tif": (Image.fromarray(deep), deep[..., None]),
        "f.tif": (Image.fromarray(unit), unit[..., None]),
    }
    for name, (image, expected) in cases.items():
        image.save(tmp_path / name)
        array = read_stored(tmp_path / name)
        assert array.dtype == expected.dtype and np.array_equal(array, expected), name
        assert probe(tmp_path / name) == ((_layout(expected)), 6, 5), name
    np.save(tmp_path / "hw.npy", deep)
    np.save(tmp_path / "hwc.npy", rng.random((6, 5, 7)))  # float64: read as float32
    assert np.array_equal(read_stored(tmp_path / "hw.npy"), deep[..., None])
    assert read_stored(tmp_path / "hwc.npy").shape == (6, 5, 7) and read_stored(tmp_path / "hwc.npy").dtype == np.float32


def _layout(expected: np.ndarray):
    from adm.data.stored import Layout

    return Layout(expected.shape[-1], str(expected.dtype))


def test_what_cannot_be_read_faithfully_is_refused_in_one_line(tmp_path):
    rgb = Image.fromarray(np.zeros((4, 4, 3), np.uint8))
    rgb.save(tmp_path / "pages.tif", save_all=True, append_images=[rgb])
    png16(tmp_path / "la16.png", np.zeros((4, 4, 2), np.uint16))
    np.save(tmp_path / "signed.npy", np.zeros((4, 4), np.int32))
    np.save(tmp_path / "wide.npy", np.full((4, 4), -0.5, np.float32))
    for name, message in [("pages.tif", "TIFF of 2 pages"), ("la16.png", "16-bit grayscale + alpha"),
                          ("signed.npy", "int32 pixels"), ("wide.npy", "float pixels in [-0.5, -0.5]")]:
        with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("+", r"\+")) as error:
            read_stored(tmp_path / name)
        assert "\n" not in str(error.value)


def test_deep_files_read_as_rgb_are_scaled_not_clipped(data):
    """Where 8-bit RGB is read (evaluation folders, a reference of the training data), 16-bit
    grayscale is scaled by its depth; PIL's own conversion clips everything above 255 to white."""
    eight = next(open_images(data["gray8"]).batches(8))
    assert np.array_equal(next(open_images(data["gray16"]).batches(8)), eight)
    assert np.array_equal(next(open_images(data["npy16"]).batches(8)), eight)


def test_sixteen_bit_pixels_keep_their_precision_into_the_network(data):
    source = open_source(data["gray16"], image_size=16, need_labels=False)
    assert (source.channels, source.images.dtype) == (1, "uint16")
    dataset = StreamDataset(source, SampleOrder((0, 1), 0, shuffle=False), Augment(16), 0)
    x = to_model_input(collate([dataset[0], dataset[1]]).images, torch.device("cpu"))
    stored = np.stack([read_stored(source.images.files[i]) for i in (0, 1)]).astype(np.float64)
    assert x.shape == (2, 1, 16, 16) and x.dtype == torch.float32
    assert np.allclose(x.numpy(), (stored / 32767.5 - 1).transpose(0, 3, 1, 2), atol=1e-6)  # 65535 -> 1, 0 -> -1


def test_crops_resize_every_channel_and_keep_rgb_as_pil_does():
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    pil = np.asarray(Image.fromarray(rgb).resize((19, 16), Image.BICUBIC))[:, 1:17]  # the original's path
    assert np.array_equal(center_crop(rgb, 16), pil)
    two = np.stack([rgb[..., 0], rgb[..., 1]], -1)
    assert np.array_equal(center_crop(two, 16), center_crop(rgb, 16)[..., :2])  # each channel as PIL's RGB does
    ramp = np.add.outer(np.arange(20) * 6, np.arange(24) * 4).astype(np.uint8)[..., None]  # smooth: no overshoot
    out = center_crop(ramp.astype(np.uint16) * 257, 16)
    assert out.shape == (16, 16, 1) and out.dtype == np.uint16
    assert np.abs(out.astype(int) - center_crop(ramp, 16).astype(int) * 257).max() <= 257  # the 8-bit result, finer
    unit = rng.random((20, 24, 6)).astype(np.float32)
    out = center_crop(unit, 16)
    assert out.shape == (16, 16, 6) and out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1


# ---- training: the channel count comes from the data -------------------------------------


def test_mixed_channel_counts_in_a_folder_name_two_files(data, tmp_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(mixed / "a.png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(mixed / "b.png")
    line = refused("train", "--preset", "tiny", "--data", mixed, "--run-dir", tmp_path / "run", *FAST)
    assert str(mixed / "a.png") in line and str(mixed / "b.png") in line and "1 channel" in line
    assert not (tmp_path / "run").exists()


def test_given_in_channels_must_match_the_data(data, tmp_path):
    line = refused("train", "--preset", "tiny", "--data", data["gray8"], "--model-flags", "--in_channels 3",
                   "--run-dir", tmp_path / "run", *FAST)
    assert "1-channel images" in line and "--in_channels 3" in line
    doc = json.loads(ok("train", "--preset", "tiny", "--data", data["gray8"], "--run-dir", tmp_path / "run",
                        "--model-flags", "--in_channels 1", "--dry-run").output)
    assert doc["model_flags"]["in_channels"] == 1
    doc = json.loads(ok("train", "--preset", "tiny", "--data", data["rgba.npz"], "--run-dir", tmp_path / "run",
                        "--dry-run").output)
    assert doc["model_flags"]["in_channels"] == 4


@pytest.mark.parametrize("name", ["gray16", "npy16", "nhw.npz"])
def test_sixteen_bit_data_trains_and_samples_grayscale(data, tmp_path, name):
    run = tmp_path / "run"
    ok("train", "--preset", "tiny", "--data", data[name], "--run-dir", run, *FAST)
    assert json.loads((run / "config.json").read_text())["model_flags"]["in_channels"] == 1
    out = tmp_path / "s.npz"
    ok("sample", "--run-dir", run, "-n", 3, "--steps", 3, "--out", out, "-q")
    assert samples_of(out).shape == (3, 16, 16, 1) and samples_of(out).dtype == np.uint8
    assert Image.open(out.with_suffix(".png")).mode == "L"


def test_a_grayscale_model_trains_samples_and_evaluates_through_the_cli(data, gray_run, tmp_path):
    flags = json.loads((gray_run / "config.json").read_text())["model_flags"]
    assert flags["in_channels"] == 1
    state = torch.load(next(gray_run.glob("model*.pt")), weights_only=True)
    assert state["input_blocks.0.0.weight"].shape[1] == 1 and state["out.2.weight"].shape[0] == 2  # learned sigma
    out = tmp_path / "s.npz"
    ok("sample", "--run-dir", gray_run, "-n", 4, "--steps", 3, "--out", out, "-q")
    images = samples_of(out)
    assert images.shape == (4, 16, 16, 1)
    assert Image.open(out.with_suffix(".png")).mode == "L"
    result = ok("evaluate", out, "--metric", "digits")  # the digits are grey: the judge reads grayscale
    assert "digits-FD" in result.output
    rgb = tmp_path / "rgb.npz"
    np.savez(rgb, arr_0=np.repeat(images, 3, axis=-1), arr_1=samples_of_labels(out))
    assert _fd(result.output) == _fd(ok("evaluate", rgb, "--metric", "digits").output)
    line = refused("evaluate", out, "--metric", "inception")
    assert "1-channel images" in line and "--gray-as-rgb" in line
    assert "--gray-as-rgb" in refused("evaluate", "--make-ref", out, "-o", tmp_path / "ref.npz")


def samples_of_labels(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as data:
        return data["arr_1"]


def _fd(output: str) -> str:
    return next(line for line in output.splitlines() if "digits-FD" in line).split()[-2]


def test_gray_as_rgb_shows_the_channel_three_times(tmp_path):
    from adm.evaluation.evaluator import inception_images

    grey = np.random.default_rng(3).integers(0, 256, (3, 8, 8, 1), dtype=np.uint8)
    np.savez(tmp_path / "g.npz", arr_0=grey)
    shown = inception_images(open_images(tmp_path / "g.npz"), gray_as_rgb=True)
    assert shown.channels == 3 and np.array_equal(next(shown.batches(3)), np.repeat(grey, 3, axis=-1))
    np.savez(tmp_path / "four.npz", arr_0=np.zeros((3, 8, 8, 4), np.uint8))
    with pytest.raises(UsageError, match="4-channel images"):
        inception_images(open_images(tmp_path / "four.npz"), gray_as_rgb=True)


def test_n_channel_npz_samples_as_nhwc_with_its_grid(data, tmp_path, monkeypatch):
    run = tmp_path / "rgba"
    ok("train", "--preset", "tiny", "--data", data["rgba.npz"], "--run-dir", run, *FAST)
    out = tmp_path / "s.npz"
    ok("sample", "--run-dir", run, "-n", 2, "--steps", 3, "--out", out, "-q")
    assert samples_of(out).shape == (2, 16, 16, 4) and Image.open(out.with_suffix(".png")).mode == "RGBA"
    assert "4-channel images" in refused("evaluate", out, "--metric", "inception")

    # a metric of the registry that reads any channel count gets the samples as they are
    from adm.evaluation import metrics

    def mean(samples, request):
        return {"mean": float(np.concatenate(list(samples.batches(8))).mean()), "channels": samples.channels}

    spec = metrics.MetricSpec("mean", mean, rows=(("mean", "mean", "{:.3f}"), ("channels", "channels", "{:d}")))
    monkeypatch.setattr(metrics, "available_metrics", lambda: {**metrics.BUILTIN, "mean": spec})
    rows = {line.split()[1]: line.split()[-2] for line in ok("evaluate", out, "--metric", "mean").output.splitlines()
            if line.startswith("│")}
    assert rows == {"mean": f"{samples_of(out).mean():.3f}", "channels": "4"}

    run = tmp_path / "five"
    ok("train", "--preset", "tiny", "--data", data["five.npz"], "--run-dir", run, *FAST)
    out = tmp_path / "f.npz"
    result = ok("sample", "--run-dir", run, "-n", 2, "--steps", 3, "--out", out)
    assert samples_of(out).shape == (2, 16, 16, 5)
    assert "channel 0 of the samples' 5" in " ".join(result.output.split())
    assert Image.open(out.with_suffix(".png")).mode == "L"


# ---- guidance, edits and upsampling of grayscale models -----------------------------------


def test_a_grayscale_classifier_guides_a_grayscale_model_and_other_channels_are_refused(data, gray_run, tmp_path):
    classifier = tmp_path / "cls"
    ok("train-classifier", "--preset", "tiny", "--data", data["gray8"], "--run-dir", classifier, *FAST)
    assert json.loads((classifier / "config.json").read_text())["classifier_flags"]["classifier_in_channels"] == 1
    out = tmp_path / "g.npz"
    ok("sample", "--run-dir", gray_run, "--classifier-run-dir", classifier, "--scale", 1, "-n", 2, "--steps", 3,
       "--out", out, "-q")
    assert samples_of(out).shape == (2, 16, 16, 1)
    rgb = tmp_path / "rgb"
    ok("train-classifier", "--preset", "tiny", "--data", data["rgba.npz"], "--run-dir", rgb, *FAST,
       "--classifier-flags", "--classifier_num_classes 10")
    line = refused("sample", "--run-dir", gray_run, "--classifier-run-dir", rgb, "-n", 2, "--steps", 3,
                   "--out", tmp_path / "x.npz")
    assert "classifier reads 4-channel images, the model makes 1-channel" in line
    four = tmp_path / "four"
    ok("train", "--preset", "tiny-cond", "--data", data["rgba.npz"], "--run-dir", four, *FAST)
    line = refused("sample", "--run-dir", gray_run, "--guide-model", four, "--autoguidance", 1.5, "-n", 2,
                   "--steps", 3, "--out", tmp_path / "y.npz")
    assert "has channels 4, the model 1" in line


def test_edits_and_upsampling_take_grayscale_folders(data, gray_run, tmp_path):
    out = tmp_path / "e.npz"
    ok("edit", data["gray8"], "--run-dir", gray_run, "--strength", 0.5, "--steps", 6, "-n", 2, "--classes", 1,
       "--out", out, "-q")
    assert samples_of(out).shape == (2, 16, 16, 1) and Image.open(out.with_suffix(".png")).mode == "L"
    assert "inputs have 4 channel(s)" in refused("edit", data["rgba.npz"], "--run-dir", gray_run, "--steps", 6,
                                                 "--classes", 1, "--out", tmp_path / "x.npz")
    flags = UPSAMPLER_FLAGS + " --class_cond False --in_channels 1"
    weights = tmp_path / "up.pt"
    torch.save(randomize(build_model(parse_model_flags(flags)), 5).state_dict(), weights)
    base = tmp_path / "base"  # 8x8 grayscale PNGs: read as stored for a 1-channel upsampler
    base.mkdir()
    for i in range(2):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(base / f"{i}.png")
    out = tmp_path / "u.npz"
    ok("upsample", "--model-flags", flags, "--model-path", weights, "--base-samples", base, "--steps", 3,
       "--out", out, "-q", "--device", "cpu")
    assert samples_of(out).shape == (2, 16, 16, 1)


# ---- RGB networks are the original's --------------------------------------------------------


def test_rgb_networks_keep_their_keys_and_shapes():
    """Every flag string without --in_channels builds the original's network: 3 channels in, 3
    or 6 out, and the channel count is not among the flags given (preset strings unchanged)."""
    registry = default_registry()
    for preset in registry.presets.values():
        for flags in (preset.model_flags, preset.classifier_flags):
            if flags is None:
                continue
            assert "in_channels" not in flags.given() and "classifier_in_channels" not in flags.given()
    flags = parse_model_flags(MODEL_FLAGS)
    assert unet_kwargs(flags)["in_channels"] == 3 and unet_kwargs(flags)["out_channels"] == 6
    rgb = shapes(build_model(flags, device="meta"))
    gray = shapes(build_model(flags.replace(in_channels=1), device="meta"))
    assert rgb.keys() == gray.keys()
    changed = {key for key in rgb if rgb[key] != gray[key]}
    assert changed == {"input_blocks.0.0.weight", "out.2.weight", "out.2.bias"}
    assert rgb["input_blocks.0.0.weight"][1] == 3 and rgb["out.2.weight"][0] == 6
    assert gray["input_blocks.0.0.weight"][1] == 1 and gray["out.2.weight"][0] == 2
