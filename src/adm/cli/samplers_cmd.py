"""`adm samplers`: every sampler (built-in and plugins) with its options and defaults.

Listing them loads no torch: the built-ins are registered by reference (``SamplerSpec.function``)
and imported when a sampler runs; a plugin is loaded when it is listed.
"""

from __future__ import annotations

from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from adm.cli.common import console, guarded


@guarded
def samplers() -> None:
    """List the samplers, their options (--sampler-opt KEY=VALUE) and default spacing."""
    from adm.api.catalog import available_samplers, get_sampler

    found = available_samplers()
    chains = "/".join(name for name in found if get_sampler(name).chain_only)
    own = "/".join(name for name in found if get_sampler(name).grid is not None)
    table = Table(title="adm samplers",
                  caption=f"--steps counts network evaluations ({chains}: a respacing; {own}: or grid indices); "
                          "evals: per step")
    for column in ("name", "what", "spacing", "evals", "options (default)"):
        table.add_column(column, no_wrap=column != "what")  # only prose wraps: names and values stay whole
    described: dict[tuple[str, str], list[str]] = {}  # (option, description) -> the samplers that have it
    for name in found:
        spec = get_sampler(name)
        for key, field in spec.options.model_fields.items():
            described.setdefault((key, field.description or ""), []).append(name)
        options = "\n".join(f"{key}={field.default}" for key, field in spec.options.model_fields.items()) or "-"
        kind = " (stochastic)" if spec.stochastic else ""
        spacing = "indices" if spec.grid is not None else spec.spacing
        table.add_row(name, spec.description + kind, spacing, str(spec.evals_per_step), options)
    console.print(table)
    console.print("Options (--sampler-opt KEY=VALUE):")
    for (key, description), names in described.items():
        console.print(f"  {key} ({', '.join(names)}):", markup=False, highlight=False)
        console.print(Padding(Text(description), (0, 0, 0, 4), expand=False), highlight=False)
    from adm.api.catalog import available_guidance, guidance_option

    console.print("Guidance methods (each with its scale; a plugin's: --guidance NAME=SCALE):")
    for name, spec in available_guidance().items():
        console.print(f"  {name} ({guidance_option(name)}): {spec.description}", markup=False, highlight=False)
