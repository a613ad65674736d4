"""`sagec ls zoo` and `sagec ls saes [PATTERN]`: what exists, offline.

`ls saes` lists sae_lens's bundled pretrained directory (release and id, as a spec's
`source sae_lens "release" "id"` names them) and the zoo's SAEs (`source zoo "name"`). PATTERN is
a shell-style glob (`*topk*`) or, without wildcards, a case-insensitive substring; it matches
the release, the id or the zoo name. A sae_lens SAE whose files are in the local Hugging Face
cache is marked `cached` (it loads with HF_HUB_OFFLINE=1), the others `download`.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Sequence

import click


@click.group("ls")
def command() -> None:
    """List zoo models and SAEs, and sae_lens's pretrained SAEs."""


@command.command("zoo")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def ls_zoo(as_json: bool) -> None:
    """The zoo's models and SAEs, with where each lives (committed, cached, or built on first use)."""
    from runtime import zoo

    models = zoo.zoo_models()
    saes = zoo.zoo_saes()
    if as_json:
        click.echo(json.dumps({
            "models": [{"name": m.name, "description": m.description, "architecture": m.architecture,
                        "tasks": list(m.tasks), "status": m.status} for m in models],
            "saes": [_sae_json(s) for s in saes],
        }, indent=2))
        return
    click.echo("models")
    _table([(m.name, m.status, ", ".join(m.tasks), m.architecture) for m in models], ("name", "status", "tasks", "architecture"))
    click.echo("")
    click.echo("saes (<model>/<kind>/<component>.<layer>)")
    rows = []
    for model in dict.fromkeys(s.model for s in saes):
        mine = [s for s in saes if s.model == model]
        kinds = ", ".join(dict.fromkeys(s.kind for s in mine))
        locations = _span([s.location for s in mine])
        counts = {st: sum(s.status == st for s in mine) for st in ("committed", "built", "lazy", "missing")}
        status = ", ".join(f"{n} {st}" for st, n in counts.items() if n)
        rows.append((model, kinds, locations, status))
    _table(rows, ("model", "kinds", "locations", "status"))


@command.command("saes")
@click.argument("pattern", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def ls_saes(pattern: str | None, as_json: bool) -> None:
    """SAEs from sae_lens's pretrained directory and the zoo, optionally filtered by PATTERN."""
    from runtime import zoo

    rows = [{"source": "zoo", **_sae_json(s)} for s in zoo.zoo_saes()]
    rows += _sae_lens_rows()
    if pattern:
        rows = [r for r in rows if any(_matches(pattern, r.get(k) or "") for k in ("name", "release", "id"))]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no SAE matches {pattern!r}", err=True)
        return
    table = []
    for r in rows:
        if r["source"] == "zoo":
            table.append(("zoo", r["name"], "", r["model"], r["location"], r["status"]))
        else:
            table.append(("sae_lens", r["release"], r["id"], r["model"], "", r["status"]))
    _table(table, ("source", "release / zoo name", "id", "model", "location", "status"))


def _sae_json(s) -> dict:
    return {"name": s.name, "model": s.model, "kind": s.kind, "location": str(s.location), "hook_name": s.hook_name,
            "status": s.status}


def _sae_lens_rows() -> list[dict]:
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    from runtime.saes.loading import release_cached, snapshot_folder

    rows = []
    for release, info in get_pretrained_saes_directory().items():
        present = snapshot_folder(info.repo_id) is not None  # most releases: nothing to look at
        for sae_id in info.saes_map:
            cached = present and release_cached(release, sae_id)
            rows.append({"source": "sae_lens", "release": release, "id": sae_id, "model": info.model, "status": "cached" if cached else "download"})
    return rows


def _matches(pattern: str, text: str) -> bool:
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatch(text.lower(), pattern.lower())
    return pattern.lower() in text.lower()


def _span(locations) -> str:
    """`resid_post 0..29` style summary of a set of locations."""
    by: dict[str, list[int]] = {}
    for loc in sorted(set(locations)):
        by.setdefault(loc.component, []).append(loc.layer)
    parts = []
    for component, layers in by.items():
        contiguous = layers == list(range(layers[0], layers[-1] + 1))
        shown = f"{layers[0]}..{layers[-1]}" if contiguous and len(layers) > 2 else ",".join(map(str, layers))
        parts.append(f"{component} {shown}")
    return "; ".join(parts)


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in (header, *rows):
        click.echo("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())
