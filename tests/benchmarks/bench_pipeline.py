"""Pipeline benchmark (not collected by pytest): how `sagec run` scales with SAEs and prompts.

    python tests/benchmarks/bench_pipeline.py [--ks 1,2,4,8] [--ns 128,512,2048]

For every K SAEs x N prompts it runs the whole pipeline in a fresh process and a fresh cache on a
small model (the tiny random GPT-2 of tests/tiny_pipeline.py) and prints, per pass,
the model forward/backward prompt-passes and wall time; then the total, the time the same
prompt-passes take as bare HF forwards and backwards without nnsight or any bookkeeping, their
ratio, and the process's peak memory.

Goals (issue 5): trace, locate and ground-truth passes do not grow with K; memory flat in N;
total within 1.5x of the bare passes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def one_run(folder: Path, k: int, n: int) -> dict:
    """Runs in a child process: the pipeline once, timed per node, with counters and peak RSS."""
    sys.path.insert(0, str(ROOT))
    from runtime.progress import Reporter
    from runtime.run import run_spec
    from sagec import load_spec
    from tests.tiny_pipeline import make_project

    saes = ", ".join(f"res[{i % 3}]" if i < 3 else f"copy{i}" for i in range(k))
    spec_path = make_project(folder, saes)
    text = spec_path.read_text().replace("samples 32", f"samples {n}")
    extra = "".join(f'sae copy{i} {{\n  source path "sae{i % 3}"\n}}\n' for i in range(3, k))
    spec_path.write_text(text.replace("eval tiny_gt", extra + "eval tiny_gt"))
    started = time.perf_counter()
    summary = run_spec(load_spec(str(spec_path)), cache_dir=folder / "cache", out_dir=folder / "out", reporter=Reporter("quiet"))
    total = time.perf_counter() - started
    results = json.loads(summary.results["tiny_gt"].read_text())
    by_kind: dict[str, float] = {}
    for node in results["run"]["nodes"]:
        kind = node["id"].split("[")[0]
        by_kind[kind] = by_kind.get(kind, 0.0) + node["seconds"]
    return {"total": total, "by_kind": by_kind, "passes": summary.counters,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def bare_seconds(folder: Path, passes: dict, tokens: int = 14) -> float:
    """The same prompt-passes as bare HF forwards (and backwards), batch 256, no nnsight."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder / "model").eval()
    ids = torch.randint(4, model.config.vocab_size, (256, tokens))
    with torch.no_grad():
        started = time.perf_counter()
        for _ in range(4):
            model(ids)
        forward = (time.perf_counter() - started) / (4 * 256)
    started = time.perf_counter()
    for _ in range(2):
        model(ids).logits[:, -1].sum().backward()
    backward = (time.perf_counter() - started) / (2 * 256) - forward
    final_token = forward / tokens
    return passes.get("forward", 0) * forward + passes.get("backward", 0) * backward + passes.get("final_token_forward", 0) * final_token


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ks", default="1,2,4,8")
    parser.add_argument("--ns", default="128,512,2048")
    parser.add_argument("--child", nargs=3, metavar=("FOLDER", "K", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_run(Path(args.child[0]), int(args.child[1]), int(args.child[2]))))
        return
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    print(f"{'K':>2} {'N':>5} | {'sample':>6} {'locate':>6} {'trace':>6} {'gt':>6} {'score':>6} | {'fwd':>7} {'bwd':>5} {'final':>7} | {'total s':>7} {'bare s':>7} {'ratio':>5} | {'peak MB':>7}")
    for n in (int(x) for x in args.ns.split(",")):
        for k in (int(x) for x in args.ks.split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                out = subprocess.run([sys.executable, __file__, "--child", tmp, str(k), str(n)], env=env, capture_output=True, text=True, cwd=ROOT)
                if out.returncode != 0:
                    print(f"K={k} N={n} failed:\n{out.stderr[-2000:]}")
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                bare = bare_seconds(Path(tmp), r["passes"])
            t, p = r["by_kind"], r["passes"]
            print(f"{k:>2} {n:>5} | {t.get('sample', 0):6.1f} {t.get('locate', 0):6.1f} {t.get('trace', 0):6.1f} {t.get('ground_truth', 0):6.1f} {t.get('score', 0):6.1f} | "
                  f"{p.get('forward', 0):>7} {p.get('backward', 0):>5} {p.get('final_token_forward', 0):>7} | {r['total']:7.1f} {bare:7.2f} {r['total'] / max(bare, 1e-9):5.1f} | {r['peak_mb']:7.0f}")


if __name__ == "__main__":
    main()
