"""Flag parsing and validation: wrong flags are one-line errors, the README's strings parse as is."""

import pytest

from adm.core.errors import UsageError
from adm.spec.flags import (
    ClassifierFlags,
    ModelFlags,
    SuperResFlags,
    channel_mult,
    parse_flags,
    parse_model_flags,
    split_flag_string,
)

README_64 = (
    "--attention_resolutions 32,16,8 --class_cond True --diffusion_steps 1000 --dropout 0.1 "
    "--image_size 64 --learn_sigma True --noise_schedule cosine --num_channels 192 --num_head_channels 64 "
    "--num_res_blocks 3 --resblock_updown True --use_new_attention_order True --use_fp16 True "
    "--use_scale_shift_norm True"
)


def test_readme_model_flags_parse_unchanged():
    flags = parse_model_flags(README_64)
    assert isinstance(flags, ModelFlags)
    assert flags.use_new_attention_order is True and flags.num_res_blocks == 3 and flags.dropout == 0.1
    assert channel_mult(flags) == (1, 2, 3, 4)


def test_equals_syntax_and_str2bool_spellings():
    assert split_flag_string("--a=1 --b yes") == {"a": "1", "b": "yes"}
    assert parse_flags(ModelFlags, "--class_cond y --learn_sigma=0").class_cond is True


def test_large_size_selects_the_upsampler_flags():
    flags = parse_model_flags("--large_size 256 --small_size 64 --num_channels 192")
    assert isinstance(flags, SuperResFlags)
    assert channel_mult(flags) == (1, 1, 2, 2, 4, 4)


def test_512_uses_the_fractional_multiplier_but_the_upsampler_does_not():
    assert channel_mult(ModelFlags(image_size=512)) == (0.5, 1, 1, 2, 2, 4, 4)
    assert channel_mult(SuperResFlags(large_size=512, small_size=128)) == (1, 1, 2, 2, 4, 4)
    assert channel_mult(parse_flags(ModelFlags, "--image_size 32 --channel_mult 1,1.5,2 --num_channels 64")) == (1, 1.5, 2)


@pytest.mark.parametrize(
    "flags, message",
    [
        ("--image_size 100", "image size 100 has no default channel multipliers"),
        ("--image_szie 64", "did you mean --image_size"),
        ("--class_cond maybe", "expected a boolean"),
        ("--num_channels abc", "bad value for --num_channels"),
        ("--noise_schedule quadratic", "bad value for --noise_schedule"),
        ("--attention_resolutions 32,7", "does not divide the image size"),
        ("--num_channels 100", "not a positive multiple of 32"),
        ("--image_size", "has no value"),
        ("--channel_mult 1,x", "comma list of numbers"),
    ],
)
def test_bad_flags_are_one_line_usage_errors(flags, message):
    with pytest.raises(UsageError, match=message) as info:
        parse_model_flags(flags)
    assert "\n" not in str(info.value)
    assert info.value.exit_code == 2


def test_classifier_flags_and_extensions():
    flags = parse_flags(ClassifierFlags, "--image_size 16 --classifier_width 32 --classifier_channel_mult 1,1 --classifier_num_head_channels 16")
    assert channel_mult(flags) == (1, 1)
    with pytest.raises(UsageError, match="unknown flag --num_channels for a classifier"):
        parse_flags(ClassifierFlags, "--num_channels 3")


def test_replace_revalidates():
    flags = ModelFlags(image_size=64)
    assert flags.replace(num_channels=64).num_channels == 64
    with pytest.raises(UsageError):
        flags.replace(image_size=100)
