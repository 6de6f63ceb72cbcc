"""The names of the time grids (``adm.diffusion.grids`` builds them), torch-free so that what
reads them for help texts and validation (the sampler registry) loads without torch."""

SPACINGS = ("respaced", "time", "logsnr", "karras")
