"""`adm samplers`: every sampler (built-in and plugins) with its options and defaults."""

from __future__ import annotations

from rich.table import Table

from adm.api.catalog import available_samplers, get_sampler
from adm.cli.common import console, guarded


@guarded
def samplers() -> None:
    """List the samplers, their options (--sampler-opt KEY=VALUE) and default spacing."""
    table = Table(title="adm samplers", caption="--steps counts network evaluations, except for ddpm/ddim (a respacing)")
    for column in ("name", "what", "spacing", "evals/step", "options (default)"):
        table.add_column(column, no_wrap=column == "name")
    described: dict[tuple[str, str], list[str]] = {}  # (option, description) -> the samplers that have it
    for name in available_samplers():
        spec = get_sampler(name)
        for key, field in spec.options.model_fields.items():
            described.setdefault((key, field.description or ""), []).append(name)
        options = ", ".join(
            f"{key}={field.default}" for key, field in spec.options.model_fields.items()
        ) or "-"
        kind = " (stochastic)" if spec.stochastic else ""
        table.add_row(name, spec.description + kind, spec.spacing, str(spec.evals_per_step), options)
    console.print(table)
    console.print("Options (--sampler-opt KEY=VALUE):")
    for (key, description), names in described.items():
        console.print(f"  {key} ({', '.join(names)}): {description}", markup=False, highlight=False)
