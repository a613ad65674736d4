"""Pipeline benchmark (not collected by pytest): how `sagec run` scales with SAEs and prompts.

    python tests/benchmarks/bench_pipeline.py [--ks 1,2,4,8] [--ns 128,512,2048] [--repeats 2]
    python tests/benchmarks/bench_pipeline.py --model smollm2-135m --ks 1,4 --ns 128,256

For every K SAEs x N prompts it runs the IOI task of specs/ioi-tiny.sage on the zoo's trained
tiny-ioi with its committed residual SAEs (or that of specs/ioi.sage on the real SmolLM2-135M)
in a fresh process and a fresh cache, `--repeats` times, showing the fastest run. The search is
limited to one layer and the K SAEs sit at that layer's resid_post (the four kinds in turn,
repeated under new names beyond four), so every SAE serves every located cross-section. It
prints, per pass, wall time; the model forward/backward prompt-passes; the total; the time the
same prompt-passes take as bare HF forwards and backwards of the run's own prompts (batched as
the run batches them, without nnsight or any bookkeeping; each token recomputed on a clean prefix counts as a
forward's share of one token); their ratio; and the process's peak memory. Importing torch,
transformers, nnsight and sae_lens (the same few seconds for every K and N, and paid by the bare
passes too) is timed apart.

Goals (issue 5): trace, locate and ground-truth passes do not grow with K; memory flat in N;
total within 1.5x of the bare passes.

    python tests/benchmarks/bench_pipeline.py --whole [--model smollm2-135m] [--ns 128]

The whole-model case (issue 13): one zoo family (`topk-k8`) over EVERY layer's resid_post, the
search over heads and MLPs at every layer, scored with residual reconstruction and as a suite.
Members resolved after locate: it prints the score nodes declared and those that ran (served a
located cross-section), the SAEs loaded (weights read; the others never are, nor built for the
zoo), the suite's coverage, time per pass and in total.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("topk-k8", "relu-l1", "topk-k32", "weak")
# model -> (the spec whose model, vocabularies and task are reused, its first SAE line, its
# `samples` line, the layer searched and read by the SAEs, the model's own class for the imports)
MODELS = {
    "tiny-ioi": ("ioi-tiny.sage", "sae l1[l]", "samples 512 seed 0", 2, "tiny", "GPT2LMHeadModel"),
    "smollm2-135m": ("ioi.sage", "sae l1[l]", "samples 256 seed 0", 23, "smol", "LlamaForCausalLM"),
}


def base_text(source: str) -> str:
    """The spec's text in float32, whatever its own dtype (specs/ioi.sage runs in bfloat16): the
    figures in the README are float32's."""
    return re.sub(r"(?m)^(\s*)dtype \w+", r"\1dtype float32", (ROOT / "specs" / source).read_text(), count=1)


def spec_text(k: int, n: int, model: str = "tiny-ioi") -> str:
    source, first_sae, samples, layer, name, _ = MODELS[model]
    text = base_text(source)
    text = text[: text.index(first_sae)]  # keep model, vocabs and task
    text = text.replace(samples, f"samples {n} seed 0")
    saes = "".join(f'sae s{i} {{\n  source zoo "{model}/{KINDS[i % 4]}/resid_post.{layer}"\n}}\n' for i in range(k))
    uses = ", ".join(f"s{i}" for i in range(k))
    return text + saes + f"""
eval bench {{
  model {name}
  task ioi
  locate {{ method attribution  components heads, mlp  layers {layer}  positions s2, end  select top 4  verify patching }}
  ground_truth {{ method mean  validate sufficiency, necessity, control }}
  saes {uses} reconstruct residual
  report "out" as json
}}
"""


LAYERS = {"tiny-ioi": 3, "smollm2-135m": 30}


def whole_spec_text(n: int, model: str = "tiny-ioi") -> str:
    source, first_sae, samples, _, name, _ = MODELS[model]
    text = base_text(source)
    text = text[: text.index(first_sae)].replace(samples, f"samples {n} seed 0")
    return text + f"""sae fam[l] for l in 0..{LAYERS[model] - 1} {{
  source zoo "{model}/topk-k8/resid_post.{{{{l}}}}"
}}

eval bench {{
  model {name}
  task ioi
  locate {{ method attribution  components heads, mlp  positions s2, end  select top 4  verify patching }}
  ground_truth {{ method mean  validate sufficiency, necessity, control }}
  saes fam[*] reconstruct residual
  report "out" as json
}}
"""


def whole_run(folder: Path, n: int, model: str) -> dict:
    """Runs in a child process: the whole-model family once."""
    sys.path.insert(0, str(ROOT))
    import runtime.zoo  # noqa: F401
    from runtime.execute.progress import Reporter
    from runtime.execute.run import run_spec
    from sagec import load_spec

    spec_path = folder / "bench.sage"
    spec_path.write_text(whole_spec_text(n, model))
    spec = load_spec(str(spec_path))
    started = time.perf_counter()
    summary = run_spec(spec, cache_dir=folder / "cache", out_dir=folder / "out", reporter=Reporter("quiet"))
    total = time.perf_counter() - started
    doc = json.loads(summary.results["bench"].read_text())
    by_kind: dict[str, float] = {}
    for node in doc["run"]["nodes"]:
        kind = node["id"].split("[")[0]
        by_kind[kind] = by_kind.get(kind, 0.0) + node["seconds"]
    suite = doc["suites"]["fam"]
    return {"declared": len(doc["saes"]), "run": sum(e["scores"] is not None for e in doc["saes"].values()), "loads": len(summary.saes_loaded),
            "located": doc["locate"]["selected"], "coverage": suite["coverage"], "total": total, "by_kind": by_kind,
            "suite_sufficiency": (suite["scores"] or {}).get("sufficiency", {}).get("value"),
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def whole(args, env) -> None:
    print(f"{args.model} (zoo): topk-k8 over all {LAYERS[args.model]} layers' resid_post, search over heads and mlp at every layer, residual reconstruction")
    print(f"{'N':>5} | {'declared':>8} {'run':>4} {'loads':>5} | {'sites':>5} {'cover':>5} {'effect':>6} | {'locate':>6} {'trace':>6} {'gt':>6} {'score':>6} {'suite':>6} {'total s':>7} | {'peak MB':>7}")
    for n in (int(x) for x in args.ns.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run([sys.executable, __file__, "--model", args.model, "--whole-child", tmp, str(n)], env=env, capture_output=True, text=True, cwd=ROOT)
        if out.returncode != 0:
            print(f"N={n} failed:\n{out.stderr[-2000:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        t, c = r["by_kind"], r["coverage"]
        effect = c["patching_effect"]["fraction"]
        print(f"{n:>5} | {r['declared']:>8} {r['run']:>4} {r['loads']:>5} | {len(r['located']):>5} {c['sites']['fraction']:5.2f} {effect if effect is None else round(effect, 2)!s:>6} | "
              f"{t.get('locate', 0):6.1f} {t.get('trace', 0):6.1f} {t.get('ground_truth', 0):6.1f} {t.get('score', 0):6.1f} {t.get('suite', 0):6.1f} {r['total']:7.1f} | {r['peak_mb']:7.0f}")
        print(f"        located: {', '.join(r['located'])}")


def one_run(folder: Path, k: int, n: int, model: str) -> dict:
    """Runs in a child process: the pipeline once, timed per node, with counters and peak RSS."""
    sys.path.insert(0, str(ROOT))
    # The libraries' own import time (seconds, the same for every K and N; the bare passes are
    # timed after the imports too) is timed apart from the run.
    started = time.perf_counter()
    import nnsight  # noqa: F401
    import sae_lens  # noqa: F401
    import transformers

    getattr(transformers, MODELS[model][5])

    import runtime.passes  # noqa: F401
    import runtime.saes.loading  # noqa: F401
    import runtime.zoo  # noqa: F401
    from runtime.execute.progress import Reporter
    from runtime.execute.run import run_spec
    from sagec import load_spec

    imports = time.perf_counter() - started

    spec_path = folder / "bench.sage"
    spec_path.write_text(spec_text(k, n, model))
    spec = load_spec(str(spec_path))
    started = time.perf_counter()
    summary = run_spec(spec, cache_dir=folder / "cache", out_dir=folder / "out", reporter=Reporter("quiet"))
    total = time.perf_counter() - started
    results = json.loads(summary.results["bench"].read_text())
    by_kind: dict[str, float] = {}
    for node in results["run"]["nodes"]:
        kind = node["id"].split("[")[0]
        by_kind[kind] = by_kind.get(kind, 0.0) + node["seconds"]
    scored = [name for name, e in results["saes"].items() if e["scores"] is not None]
    return {"imports": imports, "total": total, "by_kind": by_kind, "passes": summary.counters, "scored": len(scored),
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "bare": bare_seconds(spec, summary.counters)}


def bare_seconds(spec, passes: dict) -> float:
    """The same prompt-passes as bare HF forwards (and backwards) of the run's own prompts, in
    length-sorted left-padded batches of the size the run used, no nnsight."""
    import torch

    from runtime.model.forward import pad_left
    from runtime.model.sources import load_model
    from runtime.passes.common import auto_batch_size
    from runtime.task.prompts import build_prompt_set

    loaded = load_model(spec.models[0])
    model = loaded.model._module
    ids = sorted((p.ids for p in build_prompt_set(spec.tasks[0], loaded.tokenizer).prompts), key=len)
    size = loaded.spec.batch_size or auto_batch_size(loaded.arch)
    batches = [pad_left(ids[i : i + size], loaded.tokenizer.pad_token_id) for i in range(0, len(ids), size)]

    def per_prompt(grad: bool) -> float:
        """The fastest of several passes over every batch (five, or two when they take over ten
        seconds): the machine's noise only ever adds time."""
        passes, spent, best = 0, 0.0, float("inf")
        while passes < 2 or (passes < 5 and spent < 10.0):
            started = time.perf_counter()
            for b in batches:
                with torch.set_grad_enabled(grad):
                    out = model(input_ids=b.input_ids, attention_mask=b.attention_mask, position_ids=b.position_ids, logits_to_keep=1)
                    if grad:
                        out.logits.sum().backward()
            took = time.perf_counter() - started
            passes, spent, best = passes + 1, spent + took, min(best, took)
        return best / len(ids)

    for p in model.parameters():
        p.requires_grad_(False)  # as the run takes gradients: from the embeddings on only
    model.get_input_embeddings().weight.requires_grad_(True)
    forward_s = per_prompt(False)
    backward_s = max(per_prompt(True) - forward_s, 0.0)
    length, n_layers = sum(map(len, ids)) / len(ids), loaded.arch.n_layers
    return passes.get("forward", 0) * forward_s + passes.get("backward", 0) * backward_s + passes.get("suffix_layer_tokens", 0) * forward_s / (length * n_layers)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ks", default="1,2,4,8")
    parser.add_argument("--ns", default="128,512,2048")
    parser.add_argument("--repeats", type=int, default=2, help="runs per configuration; the fastest is shown")
    parser.add_argument("--model", default="tiny-ioi", choices=sorted(MODELS),
                        help="tiny-ioi (default), or smollm2-135m (the real model: minutes per run; its SAEs are built on first use)")
    parser.add_argument("--whole", action="store_true", help="the whole-model case: one family over every layer, resolved after locate")
    parser.add_argument("--child", nargs=3, metavar=("FOLDER", "K", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--whole-child", nargs=2, metavar=("FOLDER", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_run(Path(args.child[0]), int(args.child[1]), int(args.child[2]), args.model)))
        return
    if args.whole_child:
        print(json.dumps(whole_run(Path(args.whole_child[0]), int(args.whole_child[1]), args.model)))
        return
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    if args.whole:
        whole(args, env)
        return
    source, _, _, layer, _, _ = MODELS[args.model]
    print(f"{args.model} (zoo), specs/{source}'s task, K SAEs at resid_post {layer}, N prompts")
    print(f"{'K':>2} {'N':>5} | {'sample':>6} {'locate':>6} {'trace':>6} {'gt':>6} {'score':>6} | {'fwd':>7} {'bwd':>5} {'suffix':>7} | {'import':>6} {'total s':>7} {'bare s':>7} {'ratio':>5} | {'peak MB':>7}")
    for n in (int(x) for x in args.ns.split(",")):
        for k in (int(x) for x in args.ks.split(",")):
            runs = []
            for _ in range(args.repeats):
                with tempfile.TemporaryDirectory() as tmp:
                    out = subprocess.run([sys.executable, __file__, "--model", args.model, "--child", tmp, str(k), str(n)], env=env, capture_output=True, text=True, cwd=ROOT)
                if out.returncode != 0:
                    print(f"K={k} N={n} failed:\n{out.stderr[-2000:]}")
                    break
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            if not runs:
                continue
            r = min(runs, key=lambda x: x["total"])
            r["bare"] = min(x["bare"] for x in runs)
            if r["scored"] != k:
                print(f"K={k} N={n}: only {r['scored']} SAEs scored")
            t, p = r["by_kind"], r["passes"]
            print(f"{k:>2} {n:>5} | {t.get('sample', 0):6.1f} {t.get('locate', 0):6.1f} {t.get('trace', 0):6.1f} {t.get('ground_truth', 0):6.1f} {t.get('score', 0):6.1f} | "
                  f"{p.get('forward', 0):>7} {p.get('backward', 0):>5} {p.get('suffix_tokens', 0):>7} | {r['imports']:6.1f} {r['total']:7.1f} {r['bare']:7.2f} {r['total'] / max(r['bare'], 1e-9):5.1f} | {r['peak_mb']:7.0f}")


if __name__ == "__main__":
    main()
