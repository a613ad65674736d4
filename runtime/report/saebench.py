"""`sagec export --format saebench`: a run's numbers in SAEBench's result envelope, one file per SAE,
one per baseline (`baseline_NAME_eval_results.json`, on every located cross-section) and one per
suite (`suite_FAMILY_eval_results.json`: the family as one system, METHOD.md section 6, with its
coverage as a metric category of its own).

SAEBench (github.com/adamkarvonen/SAEBench, `sae_bench.evals.base_eval_output.BaseEvalOutput`)
writes one `{release}_{sae_id}_eval_results.json` per SAE and eval type, holding `eval_type_id`,
`eval_config`, `eval_id` (one UUID per run), `datetime_epoch_millis`, `eval_result_metrics`
(categories, each a FLAT mapping of metric name to number: SAEBench rejects nested dicts there),
`eval_result_details` (a list of flat records), `eval_result_unstructured` (anything),
`sae_bench_commit_hash`, `sae_lens_release_id`, `sae_lens_id`, `sae_lens_version` and
`sae_cfg_dict` (its graphs read `architecture` and `d_sae` from it).

Flattening is where meaning could leak, so: every interval becomes `<metric>_ci95_low/_high`
beside its value; an undefined number is null and its reason is kept in
`eval_result_unstructured.reasons` under the same key; per cross-section metrics are averaged over
the SAE's cross-sections in the categories (named as such in `eval_config.averaging`) and given
one by one, with intervals, in `eval_result_details`.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from pathlib import Path
from statistics import mean

from runtime.store import results
from runtime.store.atomic import write_json

EVAL_TYPE_ID = "sagec_sage"
SUFFIX = "_eval_results.json"
PER_SITE = {  # eval_result_metrics category -> metric -> path under a cross-section's scores
    "reconstruction": {"explained_variance": ("explained_variance",), "l0": ("l0",), "dead_fraction": ("dead_fraction",)},
    "interpretability": {"feature_centric": ("interpretability", "feature_centric"), "value_centric": ("interpretability", "value_centric")},
    "alignment": {"best_cosine": ("alignment", "best_cosine"), "matched_cosine": ("alignment", "matched_cosine")},
}


def envelopes(doc: dict, written_ms: int) -> dict[str, dict]:
    """File name -> SAEBench envelope, for every SAE the run scored. `written_ms` dates a
    document older than `run.finished`: when its results.json was written."""
    finished = doc["run"].get("finished")
    millis = int(datetime.fromisoformat(finished).timestamp() * 1000) if finished else written_ms
    # SAEBench draws a random UUID per run; ours derives from the run, so exporting twice agrees.
    report_key = doc["plan"].get(f"report[{doc['eval']}]", "")
    run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sagec:{doc['spec']['hash']}:{report_key}:{millis}"))
    scored = {name: e for name, e in doc["saes"].items() if e.get("scores")}
    files = file_names({name: e["sae"] for name, e in scored.items()})
    out = {files[name]: envelope(doc, name, e, run_id, millis) for name, e in scored.items()}
    for name, e in doc.get("baselines", {}).items():
        out[baseline_file_name(name)] = envelope(doc, name, {**e, "sae": _baseline_identity(e["baseline"])}, run_id, millis)
    for name, e in doc.get("suites", {}).items():
        if e.get("scores"):
            out[suite_file_name(name)] = suite_envelope(doc, name, e, run_id, millis)
    return out


def suite_file_name(name: str) -> str:
    """`suite_res_eval_results.json`: apart from the SAEs' and the baselines' files."""
    return "suite_" + re.sub(r"\W", "_", name).strip("_") + SUFFIX


def suite_envelope(doc: dict, name: str, suite: dict, run_id: str, millis: int) -> dict:
    """A suite in SAEBench's envelope: described as one SAE whose latents are its used members'
    (`d_sae` their sum), with a `coverage` category."""
    used = [m for m, e in suite["members"].items() if e["used"]]
    members = [doc["saes"][m]["sae"] for m in used if m in doc["saes"]]
    identity = {
        "name": name,
        "source": "suite",
        "architecture": "suite",
        "reconstruct": suite["reconstruct"],
        "d_in": max((m.get("d_in") or 0 for m in members), default=0),
        "d_sae": sum(m.get("d_sae") or 0 for m in members),
        "members": used,
    }
    entry = {**suite, "sites": list(suite["sites"]), "sae": identity}
    out = envelope(doc, name, entry, run_id, millis)
    reasons = out["eval_result_unstructured"]["reasons"]
    coverage = {}
    for part in ("sites", "patching_effect"):
        c = suite["coverage"][part]
        coverage[f"coverage_{part}"] = c["fraction"]
        if c["fraction"] is None:
            reasons[f"coverage.coverage_{part}"] = c.get("reason", "undefined")
    out["eval_result_metrics"]["coverage"] = coverage
    out["eval_config"]["suite_members"] = {m: e["sites"] for m, e in suite["members"].items()}
    return out


def export(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write the envelopes of the run in `run_dir` into `out_dir` (default RUN_DIR/saebench)."""
    source = results.find(run_dir)
    doc = results.load(source)
    folder = Path(out_dir) if out_dir is not None else source.parent / "saebench"
    return [write_json(folder / name, data) for name, data in envelopes(doc, int(source.stat().st_mtime * 1000)).items()]


def file_name(sae: dict) -> str:
    """SAEBench's `{release}_{sae_id}_eval_results.json` ('/' made '_'); an SAE from a folder
    is named by its source and spec name, since it has no sae_lens release."""
    stem = f"{sae['release']}_{sae['id']}" if sae["source"] == "sae_lens" else f"{sae['source']}_{sae['name']}"
    return re.sub(r"[/ ]", "_", stem).replace("(", "").replace(")", "") + SUFFIX


def baseline_file_name(name: str) -> str:
    """`baseline_pca_eval_results.json`, `baseline_pca_8_...`: named apart from the SAEs' files,
    which start with a sae_lens release, `path_` or `zoo_`."""
    return "baseline_" + re.sub(r"\W", "_", name) + SUFFIX


def _baseline_identity(basis: dict) -> dict:
    """A baseline described as SAEBench describes an SAE: `architecture` and `d_sae` (the widest
    cross-section's; each one's is in `directions_per_site`)."""
    sizes = basis["directions_per_site"].values()
    return {
        "name": basis["name"],
        "source": "baseline",
        "architecture": f"baseline_{basis['kind']}",
        "d_in": max(s["width"] for s in sizes),
        "d_sae": max(s["directions"] for s in sizes),
        **{k: v for k, v in basis.items() if k not in ("name", "kind")},
    }


def file_names(saes: dict[str, dict]) -> dict[str, str]:
    """Each scored SAE's file (results name -> file name). One SAE scored under several
    reconstructions would write one file several times: each gets its reconstruction added."""
    files = {name: file_name(sae) for name, sae in saes.items()}
    taken = list(files.values())
    return {name: f.removesuffix(SUFFIX) + f"_{saes[name]['reconstruct']}" + SUFFIX if taken.count(f) > 1 else f
            for name, f in files.items()}


def envelope(doc: dict, name: str, entry: dict, run_id: str, millis: int) -> dict:
    scores, sae = entry["scores"], entry["sae"]
    reasons: dict[str, str] = {}
    metrics = {
        "sufficiency": {
            **_flat("sufficiency", scores.get("sufficiency"), reasons),
            **_flat("logit_diff_recovered", scores.get("logit_diff_recovered"), reasons),
            **_flat("spliced_metric", scores.get("spliced_metric"), reasons),
            **_flat("supervised_sufficiency", (entry.get("supervised_on_same_sites") or {}).get("sufficiency"), reasons),
        },
        "necessity": {
            **_flat("necessity", scores.get("necessity"), reasons),
            **_flat("supervised_necessity", (entry.get("supervised_on_same_sites") or {}).get("necessity"), reasons),
        },
        "control": _control(scores.get("control", {}), reasons),
    }
    sites = scores["per_site"]
    for category, named in PER_SITE.items():
        metrics[category] = {}
        for metric, path in named.items():
            values = [e["value"] for e in (results.at(s, path) for s in sites.values()) if e and e.get("value") is not None]
            metrics[category][metric] = mean(values) if values else None
            if not values:
                reasons[f"{category}.{metric}"] = "undefined at every cross-section"
    metrics.update(_text(doc, entry, reasons))
    details = []
    for site, s in sites.items():
        record: dict = {"cross_section": site, "reconstruction": entry.get("variant_per_site", {}).get(site)}
        for named in PER_SITE.values():
            for metric, path in named.items():
                record.update(_flat(metric, results.at(s, path), reasons, scope=f"details.{site}"))
        details.append(record)
    return {
        "eval_type_id": EVAL_TYPE_ID,
        "eval_config": _config(doc, entry),
        "eval_id": run_id,
        "datetime_epoch_millis": millis,
        "eval_result_metrics": metrics,
        "eval_result_details": details,
        "eval_result_unstructured": {"reasons": reasons, "sagec_results": {"eval": doc["eval"], "spec_hash": doc["spec"]["hash"], "sae": entry}},
        "sae_bench_commit_hash": f"not run by SAEBench: exported by sagec {doc['versions'].get('sagec', '')}".strip(),
        "sae_lens_release_id": sae.get("release") if sae["source"] == "sae_lens" else None,
        "sae_lens_id": sae.get("id") if sae["source"] == "sae_lens" else None,
        "sae_lens_version": sae.get("sae_lens") or doc["versions"].get("sae-lens"),
        "sae_cfg_dict": {**{k: v for k, v in sae.items() if k != "name"}, "name": name, "model_name": doc["model"]["ref"]},
    }


def _text(doc: dict, entry: dict, reasons: dict) -> dict:
    """The SAE's loss recovered on text (results.json `text`, METHOD.md section 8), under SAEBench
    core's own category and metric names (sae_bench/evals/core/eval_output.py), plus its
    explained variance, L0 and dead fraction on the same tokens; nothing when not measured."""
    sae = entry["sae"]
    name = sae["name"].removesuffix(f" ({sae.get('reconstruct')})")  # an SAE listed twice is named with its variant
    text = (doc.get("text") or {}).get("saes", {}).get(name)
    if text is None:
        return {}
    scores, raw = text.get("scores") or {}, text.get("raw") or {}
    if not scores:
        reasons["text"] = text.get("reason", "not computed")
    flat = lambda names, source, scope: {k: v for m in names for k, v in _flat(m, source.get(m), reasons, scope).items()}  # noqa: E731
    return {
        "model_behavior_preservation": flat(("kl_div_score", "kl_div_with_ablation", "kl_div_with_sae"), {**scores, **raw}, "text"),
        "model_performance_preservation": flat(("ce_loss_score", "ce_loss_with_ablation", "ce_loss_with_sae", "ce_loss_without_sae"), {**scores, **raw}, "text"),
        "text_reconstruction": flat(("explained_variance", "l0", "dead_fraction"), scores, "text"),
        "token_stats": {"total_tokens_eval_reconstruction": doc["text"]["corpus"]["scored_tokens"]},
    }


def _flat(metric: str, est: dict | None, reasons: dict, scope: str = "") -> dict:
    """One estimate as three flat numbers; an undefined part is null with its reason recorded."""
    value, (low, high) = (est["value"], est["ci95"]) if est else (None, (None, None))
    if est is None:
        reasons[f"{scope}.{metric}".lstrip(".")] = "not computed in this run"
    elif est.get("reason"):
        reasons[f"{scope}.{metric}".lstrip(".")] = est["reason"]
    return {metric: value, f"{metric}_ci95_low": low, f"{metric}_ci95_high": high}


def _control(control: dict, reasons: dict) -> dict:
    flat = {}
    for attribute, c in control.items():
        a = _key(attribute)
        flat.update(_flat(f"min_k_{a}", c.get("min_k"), reasons))
        flat.update(_flat(f"supervised_edit_success_{a}", c.get("supervised_edit_success"), reasons))
        flat.update(_flat(f"no_intervention_agreement_{a}", c.get("no_intervention_agreement"), reasons))
        for k, by_k in c.get("by_k", {}).items():
            flat.update(_flat(f"edit_success_{a}_k{k}", by_k.get("edit_success"), reasons))
    return flat


def _config(doc: dict, entry: dict) -> dict:
    prompts = doc["prompts"]
    any_control = next(iter((entry["scores"].get("control") or {}).values()), {})
    return {
        "eval": doc["eval"],
        "task": prompts["task"],
        "model_name": doc["model"]["ref"],
        "spec_file": doc["spec"]["file"],
        "spec_hash": doc["spec"]["hash"],
        "prompts": prompts["prompts"],
        "splits": prompts["splits"],
        "prompt_seed": prompts["seed"],
        "bootstrap_resamples": (doc.get("seeds") or {}).get("bootstrap_resamples"),
        "locate_method": doc["locate"]["method"],
        "cross_sections": entry["sites"],
        "ground_truth_method": doc["ground_truth"]["method"],
        "reconstruction": entry["sae"].get("reconstruct"),
        "control_ks": sorted(int(k) for k in any_control.get("by_k", {})),
        "averaging": "reconstruction, interpretability and alignment metrics are means over the SAE's cross-sections; eval_result_details has each with its interval",
        "sagec_version": doc["versions"].get("sagec"),
    }


def _key(name: str) -> str:
    """An attribute name as a metric-name part: SAEBench metric names are identifiers."""
    return re.sub(r"\W", "_", name)
