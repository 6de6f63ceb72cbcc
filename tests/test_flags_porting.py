"""Flags of the original's scripts pasted into --model-flags / --classifier-flags name adm's option
(issue 11: `--classifier_scale` in --classifier-flags, SAMPLE_FLAGS in --model-flags)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from adm.cli.main import app
from adm.core.errors import UsageError
from adm.spec.flags import ClassifierFlags, parse_flags, parse_model_flags

TINY = "--image_size 16 --num_channels 32 --channel_mult 1,2 --attention_resolutions 8"


@pytest.mark.parametrize(
    ("pasted", "option"),
    [
        ("--batch_size 4", "--batch-size"),
        ("--num_samples 100", "--num-samples"),
        ("--use_ddim True", "--sampler ddim"),
        ("--use_ddim False", "--sampler ddpm"),
        ("--clip_denoised True", "--clip-denoised"),
        ("--clip_denoised False", "--no-clip-denoised"),
        ("--clip_denoised", "--clip-denoised / --no-clip-denoised"),
        ("--model_path 64x64_diffusion.pt", "--model-path"),
        ("--classifier_path 64x64_classifier.pt", "--classifier-path"),
        ("--classifier_scale 1.0", "--scale"),
        ("--lr_anneal_steps 1000", "--iterations N --anneal-lr"),
        ("--save_interval 10000", "--save-every"),
        ("--resume_checkpoint model.pt", "--init (fine-tune) or --run-dir (continue a run)"),
    ],
)
def test_model_flags_name_the_adm_option(pasted, option):
    with pytest.raises(UsageError) as info:
        parse_model_flags(f"{TINY} {pasted}")
    text = str(info.value)
    assert f"use adm's {option} instead" in text and "original's scripts" in text and "\n" not in text
    assert info.value.exit_code == 2


def test_classifier_scale_in_classifier_flags_suggests_scale():
    with pytest.raises(UsageError, match=r"--classifier_scale is an option of the original's scripts, not a flag of a classifier \(use adm's --scale instead\)"):
        parse_flags(ClassifierFlags, "--image_size 64 --classifier_scale 1.0")


def test_real_flags_are_untouched():
    flags = parse_model_flags(f"{TINY} --timestep_respacing 10 --use_fp16 True")
    assert flags.timestep_respacing == "10" and flags.use_fp16
    with pytest.raises(UsageError, match="did you mean --image_size"):
        parse_model_flags("--image_szie 64")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--model-flags", f"{TINY} --batch_size 4"], "use adm's --batch-size instead"),
        (["train-classifier", "--classifier-flags", "--image_size 16 --classifier_scale 2"], "use adm's --scale instead"),
        (["train-classifier", "--classifier-flags", "--image_size 16 --iterations 300000"], "use adm's --iterations instead"),
    ],
)
def test_cli_one_line(tmp_path, args, message):
    result = CliRunner().invoke(app, [*args, "--data", str(tmp_path), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output
    assert not (tmp_path / "run").exists()
