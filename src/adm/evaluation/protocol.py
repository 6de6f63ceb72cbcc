"""The evaluator protocol's numbers, apart from the code that runs it (no torch: `adm evaluate`
shows them as its defaults when `adm` starts)."""

DEFAULT_BATCH_SIZE = 64  # the original evaluator's
REF_MAX_IMAGES = 10_000
