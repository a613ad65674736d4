"""Final-position logits only (benchmark, not collected by pytest): what it saves per forward.

    PYTHONPATH=. python tests/benchmarks/bench_logits.py [--models gemma-3-270m,smollm2-135m] [--prompts 64] [--threads 2]

sagec reads logits at each prompt's final token only, so every forward it makes asks for those
alone (`logits_to_keep`, runtime/model/forward.py), and the clean prefix of the final-token path
runs the decoder without its head. For each zoo model this times, on N IOI prompts (16
single-token names, left-padded, one batch), in a fresh process per way so peak memory is that
way's own: a plain HF forward with every position's logits, the same with `logits_to_keep=1`,
sagec's `collect` (through nnsight, final logits only), and the prefix cache with and without
the unembedding of its last position. It prints the fastest of `--repeats` forwards in wall
time and in CPU time (all threads; on a shared machine the wall time is the load's, the CPU time
much less so), the process's peak resident memory, and the peak's rise over the memory after
loading the model.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time

WAYS = ("all positions", "logits_to_keep=1", "sagec collect", "prefix + head", "prefix, no head")
NAMES = ["Mary", "John", "Alice", "Bob", "Tom", "Sarah", "James", "Emma", "David", "Anna", "Paul", "Lisa", "Mark", "Kate", "Peter", "Laura"]


def prompts(n: int) -> list[str]:
    rng = random.Random(0)
    out = []
    for _ in range(n):
        a, b = rng.sample(NAMES, 2)
        place, obj = rng.choice(["store", "park", "school", "garden"]), rng.choice(["drink", "book", "ball", "gift"])
        out.append(f"When {a} and {b} went to the {place}, {rng.choice([a, b])} gave a {obj} to")
    return out


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def child(model_name: str, way: str, n: int, repeats: int, threads: int) -> dict:
    import torch

    import runtime.zoo  # noqa: F401  (registers the zoo models)
    from runtime.model.forward import collect, pad_left, prefix_cache
    from runtime.model.sources import load_model
    from sagec.spec import Model, Origin

    torch.set_num_threads(threads)
    loaded = load_model(Model("m", "zoo", model_name, "float32", "cpu", None, n, Origin("bench", 1, 1)))
    ids = [loaded.tokenizer(p).input_ids for p in prompts(n)]
    padded = pad_left(ids, loaded.tokenizer.pad_token_id)
    hf = loaded.model._module
    kwargs = {"input_ids": padded.input_ids, "attention_mask": padded.attention_mask, "position_ids": padded.position_ids}
    loaded_mb = _rss_mb()

    def once() -> None:
        with torch.no_grad():
            if way == "all positions":
                hf(**kwargs)
            elif way == "logits_to_keep=1":
                hf(**kwargs, logits_to_keep=1)
            elif way == "sagec collect":
                collect(loaded, ids, {}, [])
            elif way == "prefix + head":
                hf(**{k: v[:, :-1] for k, v in kwargs.items()}, use_cache=True, logits_to_keep=1)
            else:
                prefix_cache(loaded, ids)

    best = best_cpu = float("inf")
    for _ in range(repeats):
        started, cpu = time.perf_counter(), time.process_time()
        once()
        best, best_cpu = min(best, time.perf_counter() - started), min(best_cpu, time.process_time() - cpu)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": best, "cpu_seconds": best_cpu, "peak_mb": peak, "rise_mb": peak - loaded_mb, "tokens": int(padded.input_ids.shape[1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="gemma-3-270m,smollm2-135m")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "WAY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.prompts, args.repeats, args.threads)))
        return
    for model in args.models.split(","):
        print(f"{model}: {args.prompts} IOI prompts in one batch, {args.threads} threads, fastest of {args.repeats}")
        print(f"  {'way':<18} {'wall s':>7} {'CPU s':>7} {'CPU vs all':>10} {'peak MB':>8} {'rise MB':>8}")
        base = None
        for way in WAYS:
            cmd = [sys.executable, __file__, "--child", model, way, "--prompts", str(args.prompts),
                   "--repeats", str(args.repeats), "--threads", str(args.threads)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            r = json.loads(done.stdout.strip().splitlines()[-1])
            base = base or r["cpu_seconds"]
            print(f"  {way:<18} {r['seconds']:>7.2f} {r['cpu_seconds']:>7.2f} {base / r['cpu_seconds']:>9.1f}x {r['peak_mb']:>8.0f} {r['rise_mb']:>8.0f}", flush=True)


if __name__ == "__main__":
    main()
