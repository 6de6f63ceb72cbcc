"""The opt-in ``guided_diffusion`` alias and ``python -m adm.compat SCRIPT``: a fork's unmodified
code runs on adm's modules, loading its checkpoints weights-only."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import adm.compat as compat
from adm.compat.__main__ import main as run_main
from adm.core.errors import UsageError
from adm.hub.checkpoints import save_state_dict
from tiny import randomize

SRC = Path(__file__).resolve().parents[1] / "src"

FORK_FLAGS = (
    "--image_size 16 --num_channels 32 --num_res_blocks 1 --channel_mult 1,2 --attention_resolutions 8 "
    "--num_head_channels 16 --learn_sigma True --diffusion_steps 100 --timestep_respacing 5 --noise_schedule linear"
)

FORK_SCRIPT = '''
"""A fork's sampling script: ILVR-style guidance through the progressive loop, its own head."""
import argparse
import os
import sys

import numpy as np
import torch as th
import torch.distributed as dist
import torch.nn.functional as F

from guided_diffusion import dist_util, logger
from guided_diffusion.gaussian_diffusion import _extract_into_tensor
from guided_diffusion.nn import conv_nd
from guided_diffusion.script_util import add_dict_to_argparser, args_to_dict, create_model_and_diffusion, model_and_diffusion_defaults
from guided_diffusion.unet import ResBlock, TimestepEmbedSequential, timestep_embedding


def main():
    defaults = dict(model_path="", seed=0)
    defaults.update(model_and_diffusion_defaults())
    parser = argparse.ArgumentParser()
    add_dict_to_argparser(parser, defaults)
    args = parser.parse_args()
    dist_util.setup_dist()
    logger.configure()
    model, diffusion = create_model_and_diffusion(**args_to_dict(args, model_and_diffusion_defaults().keys()))
    model.load_state_dict(dist_util.load_state_dict(args.model_path, map_location="cpu"))
    model.to(dist_util.dev()).eval()
    g = th.Generator().manual_seed(args.seed)
    shape = (2, 3, args.image_size, args.image_size)
    reference = th.rand(shape, generator=g) * 2 - 1
    low = lambda x: F.interpolate(F.avg_pool2d(x, 4), scale_factor=4, mode="nearest")
    for k, out in enumerate(diffusion.p_sample_loop_progressive(model, shape, noise=th.randn(shape, generator=g))):
        index = diffusion.num_timesteps - 1 - k
        t = th.full((2,), max(index - 1, 0))
        noisy = reference if index == 0 else diffusion.q_sample(reference, t, noise=th.randn(shape, generator=g))
        out["sample"] = out["sample"] - low(out["sample"]) + low(noisy)
    head = TimestepEmbedSequential(conv_nd(2, 3, 32, 3, padding=1), ResBlock(32, 8, 0.0, out_channels=64))
    feats = head(out["sample"], timestep_embedding(th.zeros(2), 8))
    coef = _extract_into_tensor(diffusion.sqrt_alphas_cumprod, th.tensor([0, 1]), shape)
    path = os.path.join(logger.get_dir(), "out.npz")
    np.savez(path, sample=out["sample"].numpy(), reference=reference.numpy(), feats=feats.detach().numpy(),
             coef=coef.numpy())
    logger.log(f"saved {path} argv={sys.argv[1:3]} world={dist.get_world_size()} main={__name__}")


if __name__ == "__main__":
    main()
'''


@pytest.fixture
def clean_alias():
    """Leave the interpreter as the test found it."""
    compat.uninstall()
    yield
    compat.uninstall()


def test_nothing_is_aliased_until_install(clean_alias):
    assert not compat.is_installed()
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("guided_diffusion")


def test_install_aliases_the_original_module_names(clean_alias):
    with compat.installed():
        import guided_diffusion
        import guided_diffusion.script_util
        from guided_diffusion import dist_util, logger
        from guided_diffusion.gaussian_diffusion import _extract_into_tensor
        from guided_diffusion.unet import ResBlock

        assert guided_diffusion is compat and guided_diffusion.script_util is compat.script_util
        assert ResBlock is compat.unet.ResBlock and _extract_into_tensor is compat.gaussian_diffusion._extract_into_tensor
        assert dist_util is compat.dist_util and logger is compat.logger
        assert compat.unet.__spec__.name == "adm.compat.unet"  # adm's modules keep their own identity
        with pytest.raises(ModuleNotFoundError, match="training is `adm train`"):
            importlib.import_module("guided_diffusion.train_util")
    assert "guided_diffusion" not in sys.modules and not compat.is_installed()
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("guided_diffusion.unet")


def test_install_refuses_when_the_original_is_already_imported(clean_alias, monkeypatch):
    monkeypatch.setitem(sys.modules, "guided_diffusion", types.ModuleType("guided_diffusion"))
    with pytest.raises(UsageError, match="already imported"):
        compat.install()


@pytest.fixture(scope="module")
def fork_checkpoint(tmp_path_factory):
    args = compat.model_and_diffusion_defaults()
    args.update(image_size=16, num_channels=32, num_res_blocks=1, channel_mult="1,2", attention_resolutions="8",
                num_head_channels=16, learn_sigma=True, diffusion_steps=100)
    model, _ = compat.create_model_and_diffusion(**args)
    path = tmp_path_factory.mktemp("fork") / "fork_model.pt"
    save_state_dict(randomize(model, 9).state_dict(), path)
    return path


def test_an_unmodified_fork_script_runs_under_the_runner(tmp_path, fork_checkpoint):
    script = tmp_path / "fork_sample.py"
    script.write_text(FORK_SCRIPT)
    env = {**os.environ, "OPENAI_LOGDIR": str(tmp_path / "logs"), "PYTHONPATH": str(SRC)}
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "adm.compat", str(script), "--model_path", str(fork_checkpoint), *FORK_FLAGS.split()]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "argv=['--model_path'" in result.stdout and "world=1 main=__main__" in result.stdout
    out = np.load(tmp_path / "logs" / "out.npz")
    low = torch.nn.functional.avg_pool2d
    np.testing.assert_allclose(low(torch.from_numpy(out["sample"]), 4), low(torch.from_numpy(out["reference"]), 4), atol=1e-5)
    assert out["feats"].shape == (2, 64, 16, 16) and out["coef"].dtype == np.float32


def test_the_runner_reports_an_unsafe_checkpoint_in_one_line(tmp_path, clean_alias, monkeypatch, capsys):
    evil = tmp_path / "evil.pt"
    torch.save({"w": torch.ones(1), "code": print}, evil)
    script = tmp_path / "load.py"
    script.write_text(textwrap.dedent(f"""
        from guided_diffusion import dist_util
        dist_util.load_state_dict({str(evil)!r}, map_location="cpu")
    """))
    monkeypatch.setattr(sys, "argv", ["python"])
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert run_main([str(script)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: refusing to load") and err.count("\n") == 1
    assert run_main([str(tmp_path / "missing.py")]) == 2
    assert run_main([]) == 2
