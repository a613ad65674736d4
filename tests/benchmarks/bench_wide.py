"""Wide-SAE benchmark (not collected by pytest): the score pass of one SAE of 2^10 .. 2^20 latents.

    python tests/benchmarks/bench_wide.py                       # tiny-ioi, every width
    python tests/benchmarks/bench_wide.py --model smollm2-135m --widths 14,18,20
    python tests/benchmarks/bench_wide.py --dense-firing        # a random 24,576-latent ReLU SAE

The SAEs are synthetic and built here: a TopK SAE (k = 8) whose first latents are the trained
zoo SAE's (`<model>/topk-k8/resid_post.<layer>`: tiny-ioi at resid_post 2, SmolLM2-135M at
resid_post 23) and whose others are random unit directions that read themselves, saved in
sae_lens's format. Each is scored on the IOI task of specs/ioi-tiny.sage or specs/ioi.sage (the
search limited to its layer, residual reconstruction: it serves every located cross-section).
The first run fills a cache with the passes before scoring; then every width runs in a fresh
process on that cache, so what it spends is the score pass (plus loading the model and the SAE).
Printed per width: the SAE's weights, score-pass seconds, the process's peak RSS and that peak
less the weights.

`--dense-firing`: a random (untrained) StandardSAE of 24,576 latents (about half fire on any
input) at resid_post 6 of a random GPT-2-small-shaped model (12 layers, d_model 768, the tiny
task's vocabulary) on specs/ioi-tiny.sage's task; today's goal: it scores in bounded time.

Goals (issue 14): peak RSS at most the SAE's weights + 1.5 GB at every width on both models; on
SmolLM2 the score pass at 2^18 at most twice that at 2^14; 2^20 on SmolLM2 completes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_pipeline import base_text  # the spec in float32, as the README's figures are

ROOT = Path(__file__).resolve().parents[2]
# model -> (spec whose model, vocabularies and task are reused, its first SAE line, the layer, the model's name there)
MODELS = {
    "tiny-ioi": ("ioi-tiny.sage", "sae l1[l]", 2, "tiny"),
    "smollm2-135m": ("ioi.sage", "sae l1[l]", 23, "smol"),
}
WIDTHS = (10, 14, 16, 18, 20)
DENSE_WIDTH = 24_576


def spec_text(model: str, folder: Path, model_block: str | None = None, layer: int | None = None) -> str:
    source, first_sae, default_layer, name = MODELS[model]
    layer = default_layer if layer is None else layer
    text = base_text(source)
    text = text[: text.index(first_sae)]  # keep model, vocabularies and task
    if model_block is not None:
        start = text.index(f"model {name} {{")
        text = text[:start] + model_block + text[text.index("}", start) + 1 :]
    return text + f"""
sae wide {{
  source path "{folder}"
}}

eval bench {{
  model {name}
  task ioi
  locate {{ method attribution  components heads, mlp  layers {layer}  positions s2, end  select top 4  verify patching }}
  ground_truth {{ method mean  validate sufficiency, necessity, control }}
  saes wide reconstruct residual
  report "out" as json
}}
"""


def build_wide(zoo_folder: Path, width: int, out: Path, seed: int = 0) -> float:
    """A TopK SAE of `width` latents: the zoo SAE's first, random unit directions after (each
    reading its own direction, at the trained latents' typical encoder norm and bias). Returns
    its weights in GB."""
    import torch
    from safetensors.torch import load_file, save_file

    cfg = json.loads((zoo_folder / "cfg.json").read_text())
    trained = load_file(str(zoo_folder / "sae_weights.safetensors"))
    d_in, kept = trained["W_dec"].shape[1], min(width, trained["W_dec"].shape[0])
    g = torch.Generator().manual_seed(seed)
    w_dec = torch.empty(width, d_in)
    w_dec[:kept] = trained["W_dec"][:kept]
    dec_norm = float(trained["W_dec"].norm(dim=1).median())
    enc_norm = float(trained["W_enc"].norm(dim=0).median())
    for start in range(kept, width, 1 << 16):  # random directions, a block at a time
        stop = min(width, start + (1 << 16))
        w_dec[start:stop] = torch.nn.functional.normalize(torch.randn(stop - start, d_in, generator=g), dim=1)
    w_enc = w_dec.T.contiguous()
    w_enc[:, kept:] *= enc_norm
    w_dec[kept:] *= dec_norm
    w_enc[:, :kept] = trained["W_enc"][:, :kept]
    b_enc = torch.full((width,), float(trained["b_enc"].median()))
    b_enc[:kept] = trained["b_enc"][:kept]
    out.mkdir(parents=True, exist_ok=True)
    save_file({"W_dec": w_dec, "W_enc": w_enc, "b_dec": trained["b_dec"].clone(), "b_enc": b_enc}, str(out / "sae_weights.safetensors"))
    (out / "cfg.json").write_text(json.dumps({**cfg, "d_sae": width}))
    return 2 * width * d_in * 4 / 1e9


def build_dense_firing(folder: Path) -> tuple[str, float]:
    """A random GPT-2-small-shaped model (12 layers, d_model 768, 12 heads; tiny-ioi's word
    tokenizer, so the tiny task's names are single tokens) and a random, untrained StandardSAE of
    24,576 latents on its resid_post 6: the spec's model block and the SAE's weights in GB."""
    import torch
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata
    from transformers import GPT2Config, GPT2LMHeadModel

    tiny = ROOT / "runtime" / "zoo" / "data" / "models" / "tiny-ioi"
    config = GPT2Config.from_pretrained(str(tiny))
    config.update({"n_embd": 768, "n_layer": 12, "n_head": 12})
    torch.manual_seed(0)
    GPT2LMHeadModel(config).eval().save_pretrained(folder / "model")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny / name, folder / "model" / name)
    sae = StandardSAE(StandardSAEConfig(d_in=768, d_sae=DENSE_WIDTH, metadata=SAEMetadata(hook_name="blocks.6.hook_resid_post", model_name="random-gpt2-small")))
    sae.save_model(str(folder / "sae"))
    block = f'model tiny {{\n  source path "{folder / "model"}"\n  dtype float32\n  device cpu\n}}'
    return block, 2 * DENSE_WIDTH * 768 * 4 / 1e9


def one_run(folder: Path, spec_path: Path) -> dict:
    """In a child process: the pipeline once on the shared cache, the score nodes timed."""
    sys.path.insert(0, str(ROOT))
    from runtime.execute.progress import Reporter
    from runtime.execute.run import run_spec
    from sagec import load_spec

    spec = load_spec(str(spec_path))
    started = time.perf_counter()
    summary = run_spec(spec, cache_dir=folder / "cache", out_dir=folder / "out", reporter=Reporter("quiet"))
    total = time.perf_counter() - started
    results = json.loads(summary.results["bench"].read_text())
    score = sum(n["seconds"] for n in results["run"]["nodes"] if n["id"].startswith("score"))
    entry = results["saes"]["wide"]
    sites = (entry.get("scores") or {}).get("per_site", {})
    l0 = [s["l0"]["value"] for s in sites.values()] if sites else []
    return {"total": total, "score": score, "scored": entry.get("scores") is not None, "reason": entry.get("reason"),
            "l0": sum(l0) / len(l0) if l0 else None, "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}


def child(folder: Path, spec_path: Path) -> dict | str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    out = subprocess.run([sys.executable, __file__, "--child", str(folder), str(spec_path)], env=env, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        return out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def row(label: str, weights: float, r: dict | str) -> str:
    if isinstance(r, str):
        return f"{label:>10} {weights:8.2f} | failed:\n{r}"
    over = r["peak_gb"] - weights
    l0 = f"{r['l0']:6.1f}" if r["l0"] is not None else "   n/a"
    flag = "" if over <= 1.5 else "  (over weights + 1.5 GB)"
    note = "" if r["scored"] else f"  not scored: {r['reason']}"
    return f"{label:>10} {weights:8.2f} | {r['score']:8.1f} {r['total']:8.1f} | {r['peak_gb']:7.2f} {over:7.2f} | {l0}{flag}{note}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny-ioi", choices=sorted(MODELS))
    parser.add_argument("--widths", default=",".join(map(str, WIDTHS)), help="log2 of the widths, e.g. 10,14,18")
    parser.add_argument("--dense-firing", action="store_true", help="a random 24,576-latent ReLU SAE on a GPT-2-small-shaped random model")
    parser.add_argument("--child", nargs=2, metavar=("FOLDER", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_run(Path(args.child[0]), Path(args.child[1]))))
        return
    sys.path.insert(0, str(ROOT))
    header = f"{'latents':>10} {'GB wts':>8} | {'score s':>8} {'total s':>8} | {'peak GB':>7} {'- wts':>7} | {'L0':>6}"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.dense_firing:
            block, weights = build_dense_firing(folder)
            spec_path = folder / "bench.sage"
            spec_path.write_text(spec_text("tiny-ioi", folder / "sae", model_block=block, layer=6))
            print(f"random GPT-2-small-shaped model, random ReLU SAE of {DENSE_WIDTH} latents at resid_post 6, specs/ioi-tiny.sage's task")
            print(header)
            print(row(str(DENSE_WIDTH), weights, child(folder, spec_path)), flush=True)
            return
        from runtime.zoo.saes import resolve_sae

        source, _, layer, _ = MODELS[args.model]
        zoo = resolve_sae(f"{args.model}/topk-k8/resid_post.{layer}")
        load = os.getloadavg()
        print(f"{args.model}: synthetic TopK SAEs at resid_post {layer} (the zoo topk-k8 latents first), specs/{source}'s task; "
              f"{os.cpu_count()} CPUs, load {load[0]:.1f} at the start")
        widths = [int(x) for x in args.widths.split(",")]
        for i, log2 in enumerate(widths):
            sae = folder / f"sae-{log2}"
            weights = build_wide(zoo, 1 << log2, sae)
            spec_path = folder / f"bench-{log2}.sage"
            spec_path.write_text(spec_text(args.model, sae))
            if i == 0:  # fill the cache with the passes before scoring, scoring another SAE
                build_wide(zoo, (1 << log2) + 1, folder / "warm")
                (folder / "warm.sage").write_text(spec_text(args.model, folder / "warm"))
                warm = child(folder, folder / "warm.sage")
                if isinstance(warm, str):
                    print(f"the first run failed:\n{warm}")
                    return
                print(f"first run (every pass): {warm['total']:.1f} s")
                print(header)
            print(row(f"2^{log2}", weights, child(folder, spec_path)), flush=True)
            shutil.rmtree(sae)
        print(f"load {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
