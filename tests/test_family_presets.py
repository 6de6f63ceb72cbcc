"""The rest of the ADM family as presets (issue 22, item 2): improved-diffusion, consistency_models and
third-party U-Nets; consistency_models' 4-D attention weights load, pass the content checks and convert.

The 20 released networks are checked against the manifests in ``../shared/golden/family-manifests``
(built by each reference's own builders with the released flags), read in place.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

import golden
from adm.cli.main import app
from adm.hub.checkpoints import load_into, load_state_dict, save_state_dict
from adm.hub.contents import contents_problem
from adm.hub.download import is_cached
from adm.models.attention import AttentionBlock
from adm.presets import default_registry, get_preset
from adm.sampling.registry import get_sampler
from adm.spec.factory import build_model
from adm.spec.flags import parse_model_flags

FAMILIES = ("improved-diffusion", "consistency-models")
RELEASED = {  # manifest -> preset
    "cifar10_uncond_50M_500K": "iddpm-cifar10",
    "cifar10_uncond_vlb_50M_500K": "iddpm-cifar10-vlb",
    "imagenet64_uncond_100M_1500K": "iddpm-imagenet64",
    "imagenet64_uncond_vlb_100M_1500K": "iddpm-imagenet64-vlb",
    "imagenet64_cond_270M_250K": "iddpm-imagenet64-cond",
    "upsample_cond_500K": "iddpm-upsampler-64-256",
    "lsun_uncond_100M_1200K_bs128": "iddpm-bedroom256",
    "lsun_uncond_100M_2400K_bs64": "iddpm-bedroom256-2400k",
    **{f"edm_{data}_ema": f"edm-{data}" for data in ("imagenet64", "bedroom256", "cat256")},
    **{f"cd_{data}_{metric}": f"cd-{data}-{metric}" for data in ("imagenet64", "bedroom256", "cat256") for metric in ("l2", "lpips")},
    **{f"ct_{data}": f"ct-{data}" for data in ("imagenet64", "bedroom256", "cat256")},
}
# A tiny consistency model: attention at 8x8, class-conditional, LSUN's plain GroupNorm.
TINY_CM = ("--training_mode consistency_distillation --image_size 16 --num_channels 32 --num_res_blocks 1 "
           "--channel_mult 1,2 --attention_resolutions 8 --num_head_channels 16 --class_cond True --num_classes 3 "
           "--use_scale_shift_norm False --resblock_updown True")


def family_manifest(name: str) -> dict:
    return json.loads((golden.golden_dir() / "family-manifests" / f"{name}.json").read_text())


def squeezed(key: str, shape: list[int]) -> list[int]:
    """consistency_models' 1x1 Conv2d attention projections as the Conv1d shape adm (guided-diffusion) has."""
    return shape[:-1] if len(shape) == 4 and key.endswith(("qkv.weight", "proj_out.weight")) else shape


def released_file(path: Path, manifest: dict, *, wrong: str | None = None) -> Path:
    """A checkpoint with the manifest's keys and shapes (4-D where the release has them) in a few KB:
    every tensor is a stride-0 view of one zero, which torch.save keeps as such. ``wrong`` drops a key."""
    one = torch.zeros(1)
    torch.save({k: one.expand(*shape) for k, shape, _ in manifest["state_dict"] if k != wrong}, path)
    return path


def cm_state(model: torch.nn.Module, seed: int = 0) -> tuple[dict, dict]:
    """Random weights as adm stores them (3-D attention projections) and as consistency_models does (4-D)."""
    gen = torch.Generator().manual_seed(seed)
    adm = {k: torch.randn(v.shape, generator=gen) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    cm = {k: v[..., None] if k.endswith(("qkv.weight", "proj_out.weight")) else v for k, v in adm.items()}
    return adm, cm


def run(*args: str, **env: str):
    return CliRunner(env={"COLUMNS": "200", **env}).invoke(app, list(args))


def error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


# ------------------------------------------------------------------------------------ manifests


def test_every_family_release_has_a_preset_with_its_download():
    names = sorted(p.stem for p in (golden.golden_dir() / "family-manifests").glob("*.json"))
    assert sorted(RELEASED) == names
    registry = default_registry()
    for manifest, preset in RELEASED.items():
        found = family_manifest(manifest)
        art = registry.artifact(registry.preset(preset).checkpoint)
        assert (art.url, art.filename) == (found["url"], found["checkpoint"]), preset
    assert {p.name for p in registry.presets.values() if p.family in FAMILIES} == set(RELEASED.values())


@cache
def released_network(preset: str) -> torch.nn.Module:
    return build_model(get_preset(preset).model_flags, device="meta")


@pytest.mark.parametrize("manifest", sorted(RELEASED))
def test_preset_builds_the_released_state_dict(manifest):
    found = family_manifest(manifest)
    model = released_network(RELEASED[manifest])
    state = model.state_dict()
    got = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in state.items()]
    assert got == [[k, squeezed(k, shape), dtype] for k, shape, dtype in found["state_dict"]]
    assert len(state) == found["num_tensors"]
    assert sum(p.numel() for p in model.parameters()) == found["num_params"]


@pytest.mark.parametrize("manifest", sorted(RELEASED))
def test_preset_flags_are_the_published_flags(manifest):
    found = family_manifest(manifest)
    preset = get_preset(RELEASED[manifest])
    ours = preset.model_flags.flag_dict()
    assert {k: ours[k] for k in found["flags"] if k in ours} == {k: v for k, v in found["flags"].items() if k in ours}
    assert ours.get("training_mode", "") == found.get("training_mode", "")
    assert preset.family == found["family"].replace("_", "-")


def test_sampling_defaults_are_the_published_recipes():
    assert get_preset("cd-imagenet64-lpips").sampling.model_dump(include={"sampler", "steps", "options"}) == {
        "sampler": "cm", "steps": "0,22,39", "options": {"karras_steps": 40}}
    assert get_preset("ct-imagenet64").sampling.steps == "0,106,200"
    assert get_preset("ct-imagenet64").sampling.options == {"karras_steps": 201}
    assert get_preset("ct-bedroom256").sampling.options == {"karras_steps": 151}
    edm = get_preset("edm-imagenet64").sampling
    assert (edm.sampler, edm.steps, edm.options["s_churn"], edm.options["s_tmax"]) == ("heun", "79", 0.0, None)
    heun = get_sampler("heun")
    assert heun.levels_for(79) == 40  # launch.sh's --steps 40
    assert get_preset("cd-imagenet64-lpips").results == {"fid_1step": 6.20, "fid_2step": 4.70}
    assert get_preset("edm-imagenet64").results == {"fid": 2.44}
    assert get_preset("iddpm-cifar10").model_flags.rescale_timesteps is True  # improved-diffusion's default
    assert get_preset("iddpm-imagenet64-cond").model_flags.rescale_timesteps is False
    for preset in default_registry().presets.values():  # every default is a valid choice of its sampler
        get_sampler(preset.sampling.sampler).parse_options(preset.sampling.options)


# ----------------------------------------------------------------------- consistency_models' 4-D weights


def test_a_consistency_models_state_dict_loads_key_for_key():
    flags = parse_model_flags(TINY_CM)
    reference = build_model(flags)
    adm_form, cm_form = cm_state(reference)
    assert any(v.dim() == 4 for v in cm_form.values())
    reference.load_state_dict(adm_form)

    plain = build_model(flags)
    plain.load_state_dict(cm_form)  # a ported script's model.load_state_dict(torch.load(path))
    on_meta = load_into(build_model(flags, device="meta"), cm_form)  # adm's loader: checked, then assigned

    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    t, y = torch.tensor([-120.0, 310.5]), torch.tensor([0, 2])
    with torch.no_grad():
        expected = reference(x, t, y)
        assert torch.equal(plain(x, t, y), expected)
        assert torch.equal(on_meta(x, t, y), expected)
    # The squeezed Conv1d is the Conv2d consistency_models applies to the feature map.
    block = next(m for m in plain.modules() if isinstance(m, AttentionBlock))
    prefix = next(name for name, m in plain.named_modules() if m is block)
    h = torch.randn(1, block.channels, 4, 4)
    conv2d = F.conv2d(h, cm_form[f"{prefix}.qkv.weight"], cm_form[f"{prefix}.qkv.bias"]).flatten(2)
    assert torch.allclose(block.qkv(h.flatten(2)), conv2d, atol=1e-5)


def test_a_released_consistency_models_file_passes_the_content_check(tmp_path):
    found = family_manifest("cd_imagenet64_lpips")
    assert any(len(shape) == 4 for _, shape, _ in found["state_dict"])
    file = released_file(tmp_path / "cd_imagenet64_lpips.pt", found)
    assert contents_problem("cd-imagenet64-lpips", file) is None
    result = run("download", "cd-imagenet64-lpips", "--from-file", str(file), "--dir", str(tmp_path / "cache"))
    assert result.exit_code == 0, result.output
    assert is_cached("cd-imagenet64-lpips", cache_dir=tmp_path / "cache")
    assert "does not fit" in contents_problem("edm-bedroom256", file)  # a different network still does not


def test_convert_writes_a_consistency_models_file_in_adm_form(tmp_path):
    flags = parse_model_flags(TINY_CM)
    adm_form, cm_form = cm_state(build_model(flags))
    torch.save(cm_form, tmp_path / "cm.pt")
    for out in ("adm.safetensors", "adm.pt"):
        result = run("convert", str(tmp_path / "cm.pt"), str(tmp_path / out))
        assert result.exit_code == 0, result.output
        converted = load_state_dict(tmp_path / out)
        assert sorted(converted) == sorted(adm_form)  # safetensors keeps keys sorted
        assert all(torch.equal(converted[k], adm_form[k]) for k in adm_form)  # 3-D, the same numbers
    strict = build_model(flags)
    torch.nn.Module.load_state_dict(strict, load_state_dict(tmp_path / "adm.pt"))
    save_state_dict(adm_form, tmp_path / "again.safetensors")  # an adm-form file converts unchanged
    assert run("convert", str(tmp_path / "again.safetensors"), str(tmp_path / "again.pt")).exit_code == 0
    assert all(torch.equal(v, adm_form[k]) for k, v in load_state_dict(tmp_path / "again.pt").items())


# ---------------------------------------------------------------------------------- third-party


def test_third_party_checkpoints_are_imported_and_checked(tmp_path):
    registry = default_registry()
    preset = registry.preset("ilvr-ffhq256")
    art = registry.artifact(preset.checkpoint)
    assert art.import_only and preset.family == "third-party" and "ilvr_adm" in preset.source
    manifest = {"state_dict": [[k, list(v.shape), "float32"] for k, v in released_network("ilvr-ffhq256").state_dict().items()]}
    assert sum(p.numel() for p in released_network("ilvr-ffhq256").parameters()) == 93_563_910  # "93M" (P2 README)
    cache_dir = str(tmp_path / "cache")

    result = run("download", "ilvr-ffhq256", "--dir", cache_dir)  # Google Drive: nothing to fetch
    assert result.exit_code == 2
    line = error_line(result)
    assert "ilvr-ffhq256 cannot be downloaded" in line and "--from-file" in line

    wrong = released_file(tmp_path / "wrong.pt", manifest, wrong="out.2.bias")
    result = run("download", "ilvr-ffhq256", "--from-file", str(wrong), "--dir", cache_dir)
    assert result.exit_code == 4
    line = error_line(result)
    assert "does not fit the model of preset ilvr-ffhq256 (1 missing: out.2.bias)" in line and "nothing was imported" in line
    assert not is_cached("ilvr-ffhq256", cache_dir=cache_dir)

    right = released_file(tmp_path / "ffhq_10m.pt", manifest)
    result = run("download", "ilvr-ffhq256", "--from-file", str(right), "--dir", cache_dir)
    assert result.exit_code == 0, result.output
    assert is_cached("ilvr-ffhq256", cache_dir=cache_dir)


def test_third_party_presets_say_where_their_facts_come_from():
    registry = default_registry()
    third = [p for p in registry.presets.values() if p.family == "third-party"]
    assert {"ilvr-ffhq256", "p2-ffhq256", "repaint-celebahq256", "repaint-places256", "disco-512-uncond"} <= {p.name for p in third}
    for preset in third:
        art = registry.artifact(preset.checkpoint)
        assert preset.source and art.kind == "checkpoint"
        assert art.import_only or art.sha256  # Drive pages are imported; Disco's file has a published sha256
        assert preset.model_flags.family == "guided-diffusion"
    disco = get_preset("disco-512-uncond")
    assert disco.model_flags.rescale_timesteps and registry.artifact(disco.checkpoint).url.endswith(
        "512x512_diffusion_uncond_finetune_008100.pt")


# ---------------------------------------------------------------------------------- adm presets


def test_adm_presets_lists_the_presets_by_family():
    result = run("presets")
    assert result.exit_code == 0, result.output
    released = result.stdout.partition("training presets")[0]
    lines = [line for line in released.splitlines() if line.startswith("│ ")]
    cells = [line.split("│")[1].strip() for line in lines]
    headers = ["guided-diffusion", "improved-diffusion", "consistency-models", "third-party", "demo"]
    assert [c for c in cells if c in headers] == headers
    family = None
    for cell in cells:
        if cell in headers:
            family = cell
        else:
            assert get_preset(cell).family == family, cell
    assert {*cells} - {*headers} == set(default_registry().presets)


def test_adm_presets_json_gives_each_family():
    result = run("presets", "--json")
    assert result.exit_code == 0, result.output

    def refuse(constant):
        raise AssertionError(f"not JSON: {constant}")

    doc = json.loads(result.stdout, parse_constant=refuse)
    assert doc["cd-imagenet64-lpips"]["family"] == "consistency-models"
    assert doc["iddpm-cifar10"]["family"] == "improved-diffusion"
    assert doc["imagenet64"]["family"] == "guided-diffusion" and doc["digits"]["family"] == "demo"
    assert doc["edm-imagenet64"]["sampling"]["options"]["s_tmax"] is None  # image_sample.py's inf: no upper limit
    assert doc["p2-ffhq256"]["source"].startswith("jychoi118/P2-weighting")
