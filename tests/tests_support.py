"""Assertions shared by several test modules."""

import torch


def assert_manifest(module: torch.nn.Module, manifest: dict) -> None:
    """state_dict keys in order, shapes, dtypes, tensor and parameter counts equal a golden manifest."""
    state = module.state_dict()
    got = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in state.items()]
    assert [k for k, *_ in got] == [k for k, *_ in manifest["state_dict"]], "keys or their order differ"
    assert got == manifest["state_dict"]
    assert len(state) == manifest["num_tensors"]
    assert sum(p.numel() for p in module.parameters()) == manifest["num_params"]
