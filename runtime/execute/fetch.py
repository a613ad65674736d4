"""`sagec fetch SPEC`: everything a spec needs from the Hugging Face hub, downloaded into the local
Hugging Face cache, so that a machine without the hub can then run it with HF_HUB_OFFLINE=1.

What a spec needs: for each hub model its evals use, the config, tokenizer and safetensors files
runtime/model/sources.py reads; for each sae_lens SAE they score, the files sae_lens's loader for
its release downloads (runtime/saes/loading.py `release_files`). Models and SAEs from the zoo,
folders and GGUF files need nothing from the hub.

`missing` says from the cache alone which files are not there: exactly, file by file, for SAEs and
for a model whose file list the cache records (huggingface_hub keeps the listing of every snapshot
it downloaded); by kind (config, tokenizer, weights) for a model it has no listing of. `download`
fetches with huggingface_hub itself (its progress bars show each file), and with
`SAE.from_pretrained` for a release whose loader's files sagec does not know.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runtime.model.sources import HUB_CONFIG_PATTERNS, HUB_WEIGHT_PATTERNS
from runtime.saes.loading import HubFile, cached_path, check_source, release_cached, release_files, snapshot_folder
from sagec.diagnostics import SpecError
from sagec.spec import Model, Origin, Sae, Spec

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tiktoken.model")


@dataclass(frozen=True)
class Need:
    """A model or an SAE of the spec that comes from the hub."""

    label: str  # "model gpt2 (hub openai-community/gpt2)"
    origin: Origin
    repo_id: str
    model: Model | None = None
    sae: Sae | None = None
    files: tuple[HubFile, ...] | None = None  # an SAE's files; None: its loader's are unknown


def needs(spec: Spec) -> list[Need]:
    """The spec's hub models and sae_lens SAEs, each once, in the order its evals name them."""
    out: dict[tuple[str, ...], Need] = {}
    for ev in spec.evals:
        model = spec.model(ev.model)
        if model.source == "hub":
            out.setdefault(("model", model.ref), Need(f"model {model.name} (hub {model.ref!r})", model.origin, model.ref, model=model))
        for use in ev.saes:
            sae = spec.sae(use.sae)
            if sae.source == "sae_lens":
                from sae_lens.loading.pretrained_saes_directory import get_repo_id_and_folder_name

                check_source(sae)  # a release and id sae_lens knows, or a located error
                repo, _ = get_repo_id_and_folder_name(sae.release or "", sae.sae_id or "")
                label = f"SAE {sae.name} (sae_lens {sae.release!r} {sae.sae_id!r})"
                out.setdefault(("sae", sae.release or "", sae.sae_id or ""), Need(label, sae.origin, repo, sae=sae, files=release_files(sae.release or "", sae.sae_id or "")))
    return list(out.values())


def missing(need: Need) -> list[str]:
    """The files of `need` the local cache lacks (empty: all there)."""
    if need.model is not None:
        return _model_missing(need.repo_id)
    sae = need.sae
    assert sae is not None
    if need.files is None:
        return [] if release_cached(sae.release or "", sae.sae_id or "") else [f"{need.repo_id}: the files of {sae.sae_id!r} (sae_lens's loader for this release reads them)"]
    return [f"{f.repo_id}: {f.filename}" for f in need.files if f.required and cached_path(f) is None]


def _model_missing(repo_id: str) -> list[str]:
    from huggingface_hub.utils import filter_repo_objects

    snapshot = snapshot_folder(repo_id)
    if snapshot is None:
        return [f"{repo_id}: the whole repository (config.json, tokenizer files, *.safetensors weights)"]
    listing = _listing(repo_id, snapshot.name)
    if listing is not None:  # the cache knows the repository's files: name each one missing
        wanted = filter_repo_objects(listing, allow_patterns=[*HUB_CONFIG_PATTERNS, *HUB_WEIGHT_PATTERNS])
        return [f"{repo_id}: {f}" for f in wanted if not (snapshot / f).is_file()]
    lacking = [] if (snapshot / "config.json").is_file() else ["config.json"]
    if not any((snapshot / f).is_file() for f in TOKENIZER_FILES):
        lacking.append("tokenizer files (" + " or ".join(TOKENIZER_FILES) + ")")
    index = snapshot / "model.safetensors.index.json"
    if index.is_file():
        import json

        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        lacking += [s for s in shards if not (snapshot / s).is_file()]
    elif not any(snapshot.glob("*.safetensors")):
        lacking.append("model.safetensors")
    return [f"{repo_id}: {f}" for f in lacking]


def _listing(repo_id: str, commit: str) -> list[str] | None:
    """The file listing huggingface_hub cached with a snapshot it downloaded, or None."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    try:
        from huggingface_hub._tree_cache import read_tree_cache
    except ImportError:  # a huggingface_hub without listing caches: fall back to the kinds of files
        return None
    entries = read_tree_cache(str(Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="model")), commit)
    return None if entries is None else sorted(entries)


def download(need: Need, log: Callable[[str], None]) -> None:
    """Fetch `need` into the local cache (files already there are checked, not fetched again)."""
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        if need.model is not None:
            snapshot_download(need.repo_id, allow_patterns=[*HUB_CONFIG_PATTERNS, *HUB_WEIGHT_PATTERNS])
        elif need.files is not None:
            for f in need.files:
                log(f"  {f.repo_id}: {f.filename}")
                try:
                    hf_hub_download(f.repo_id, f.filename)
                except EntryNotFoundError:
                    if f.required:
                        raise
        else:  # a loader whose files sagec does not know: running it downloads them
            from runtime.saes.loading import load_sae

            load_sae(need.sae)  # type: ignore[arg-type]
    except SpecError:
        raise
    except Exception as e:  # noqa: BLE001 - every hub failure (not found, gated, network) means the same here
        raise SpecError.at(need.origin, f"could not fetch {need.label}: {type(e).__name__}: {e}") from None
