"""Checkpoint I/O: safe loading, conversion, and errors that name the preset a file fits."""

import collections

import pytest
import torch
from typer.testing import CliRunner

import golden
from adm.cli.main import app
from adm.core.errors import CheckpointError
from adm.hub.checkpoints import convert, load_into, load_state_dict, save_state_dict, signature


class Payload:
    """Any class outside torch's allow-list stands for code hidden in a pickle."""

    def __reduce__(self):
        return (print, ("this would run on load",))


def test_pickle_payload_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "x": Payload()}, path)
    with pytest.raises(CheckpointError, match="refusing to load .*pickled Python objects"):
        load_state_dict(path)


def test_optimizer_state_is_named_as_such(tmp_path):
    path = tmp_path / "opt000100.pt"
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))])
    torch.save(opt.state_dict(), path)
    with pytest.raises(CheckpointError, match="optimizer state"):
        load_state_dict(path)


def test_released_format_pt_loads_and_converts_losslessly(tmp_path):
    pt = golden.golden_dir() / golden.case("classifier_16px_attention_pool")["files"]["weights_pt"]
    state = load_state_dict(pt)
    out = convert(pt, tmp_path / "c.safetensors")
    again = load_state_dict(out)
    assert set(again) == set(state)  # safetensors stores keys sorted; loading is by name
    assert all(torch.equal(state[k], again[k]) for k in state)
    back = convert(out, tmp_path / "c.pt")
    assert all(torch.equal(state[k], v) for k, v in load_state_dict(back).items())


def test_garbage_files_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_state_dict(bad)
    bad_pt = tmp_path / "bad.pt"
    bad_pt.write_bytes(b"\x00\x01garbage")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_state_dict(bad_pt)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_state_dict(tmp_path / "missing.pt")


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    save_state_dict({"a": torch.ones(3)}, tmp_path / "m.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def fake_state(manifest_name: str) -> collections.OrderedDict:
    """A state_dict with the released shapes that costs no memory (stride-0 tensors)."""
    return collections.OrderedDict(
        (k, torch.zeros(()).expand(*shape)) for k, shape, _ in golden.manifest(manifest_name)["state_dict"]
    )


def test_mismatch_names_the_differing_tensors_and_the_fitting_candidate():
    from adm.presets import get_preset
    from adm.spec.factory import build_model

    model = build_model(get_preset("imagenet256").model_flags, device="meta")
    state = fake_state("64x64_diffusion")
    candidates = [(n, signature(build_model(get_preset(n).model_flags, device="meta"))) for n in ("imagenet64", "imagenet128")]
    with pytest.raises(CheckpointError) as info:
        load_into(model, state, what="256-cond.pt", candidates=candidates)
    message = str(info.value)
    assert "does not fit" in message and "wrong shape" in message
    assert " file [" in message and ", network [" in message  # which side is which (a user could not tell)
    assert "it fits: imagenet64" in message
    assert "\n" not in message


def test_cli_convert(tmp_path):
    src = tmp_path / "m.pt"
    torch.save({"a": torch.arange(4.0)}, src)
    result = CliRunner().invoke(app, ["convert", str(src), str(tmp_path / "m.safetensors")])
    assert result.exit_code == 0, result.output
    assert torch.equal(load_state_dict(tmp_path / "m.safetensors")["a"], torch.arange(4.0))
    result = CliRunner().invoke(app, ["convert", str(src), str(tmp_path / "m.bin")])
    assert result.exit_code == 2 and "cannot tell the output format" in result.output
    torch.save({"x": Payload()}, tmp_path / "evil.pt")
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "evil.pt"), str(tmp_path / "e.safetensors")])
    assert result.exit_code == 2 and "refusing to load" in result.output
    assert not (tmp_path / "e.safetensors").exists()


@pytest.mark.parametrize("content", [
    b"hello",  # pickle opcodes by accident: the unpickler fails with KeyError: 101
    b"\x80\x02]q\x00(K\x01K\x02e.",  # a pickled list: not even a mapping
    bytes(range(256)) * 4,  # noise
    b"",
])
def test_any_garbage_named_pt_is_one_checkpoint_error(tmp_path, content):
    """Whatever a file named .pt holds, reading it fails as a CheckpointError naming it, never as
    the unpickler's own KeyError/IndexError (issue 20, item 15); also when only its keys are read."""
    from adm.hub.checkpoints import read_signature

    path = tmp_path / "text.pt"
    path.write_bytes(content)
    for read in (load_state_dict, read_signature):
        with pytest.raises(CheckpointError, match="text.pt"):
            read(path)


def test_garbage_named_safetensors_is_one_checkpoint_error(tmp_path):
    from adm.hub.checkpoints import read_signature

    path = tmp_path / "text.safetensors"
    path.write_bytes(b"\xff" * 8 + b"{not json")
    for read in (load_state_dict, read_signature):
        with pytest.raises(CheckpointError, match="text.safetensors is not a readable safetensors file"):
            read(path)


def test_convert_of_a_text_file_is_one_line(tmp_path):
    src = tmp_path / "text.pt"
    src.write_text("hello")
    result = CliRunner().invoke(app, ["convert", str(src), str(tmp_path / "o.safetensors")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip() == f"error: {src} is not a readable PyTorch checkpoint (corrupt or not a torch.save file)"
    assert not (tmp_path / "o.safetensors").exists()
