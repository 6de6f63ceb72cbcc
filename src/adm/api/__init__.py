"""The Python API: what ``import adm`` offers and the only part of adm the CLI calls.

| module | for |
|---|---|
| ``adm.api.generation`` | ``sample``, ``upsample`` (``Samples``) |
| ``adm.api.editing`` | ``edit`` |
| ``adm.api.models`` | ``load_model``: the networks and the diffusion process themselves |
| ``adm.api.options`` | ``SamplingOptions``, ``RunOptions``: the options those share, declared once |
| ``adm.api.sources`` | ``ModelSource``: a preset, flags + checkpoint, or a training run |
| ``adm.api.setup`` | one call's resolution: preset defaults, checks, networks, plan |
| ``adm.api.catalog`` | presets and samplers, built-in and plugins' |
| ``adm.api.downloads`` | downloads, the cache, imports, conversion, the demo dataset |
| ``adm.api.scoring`` | metrics (``evaluate_samples``) and reference batches |
| ``adm.api.training`` | training runs (``train``, ``train_classifier``) |
| ``adm.api.distill`` | ``distill``: a one- or two-step consistency student of any model adm samples |

The package imports nothing on its own: ``import adm`` stays cheap until a name is used.
"""
