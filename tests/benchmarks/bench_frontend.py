"""Front-end benchmark (not collected by pytest): parse and check a generated 5,000-line spec.

    python tests/benchmarks/bench_frontend.py [LINES]

Prints the line count and the best of five times (wall clock, and this process's CPU time, which
a busy machine inflates less) for parse alone and for parse + check. Goal: parse + check < 0.5 s.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from sagec.check import check_text
from sagec.parse import parse

HEADER = """\
# A generated spec: many IOI-like tasks, SAE families and evals over one model.
model smol {
  source zoo "smollm2-135m"
  dtype float32
}

vocab names = ["Mary", "John", "Alice", "Bob", "Tom", "Sarah", "James", "Emma"]
vocab places = ["store", "park", "school", "garden"]
"""

TASK = """
task ioi{i} {{
  var io in names
  var s in names where s != io and s not in ["Bob"]
  var place in places
  var order in ["ABB", "BAB"]
  var n in 0..9 where n % 2 == 0 or n > 6
  template when order == "ABB": "When {{{{io}}}} and {{{{s}}}} went to the {{{{place}}}} ({i}), {{{{s}}}} gave a drink to"
  template when order == "BAB": "When {{{{s}}}} and {{{{io}}}} went to the {{{{place}}}} ({i}), {{{{s}}}} gave a drink to"
  answer " {{{{io}}}}" against " {{{{s}}}}"  # logit difference
  counterfactual resample io, s
  position io = token of io
  position s1 = token of s
  position s1p = s1 + 1
  position s2 = token of s occurrence 2
  position end = last
  attributes io, s, order
  split by place: train 0.5, test 0.5
  samples 256 seed {i}
}}

sae res{i}[l] for l in 0..3 {{
  source sae_lens "release-{i}" "blocks.{{{{l}}}}.hook_resid_pre"
  hook "resid_pre {{{{l}}}}"
}}

eval e{i} {{
  model smol
  task ioi{i}
  locate {{
    method attribution
    components heads, mlp
    positions io, s2, end
    select top 8
    verify patching
  }}
  ground_truth {{
    method mean
    validate sufficiency, necessity, control
  }}
  saes res{i}[*] reconstruct residual
  score sufficiency, necessity, control
  report "runs/e{i}" as html, json
}}
"""


def generate(lines: int) -> str:
    parts, i = [HEADER], 0
    while sum(p.count("\n") for p in parts) < lines:
        parts.append(TASK.format(i=i))
        i += 1
    return "".join(parts)


def best_of(n: int, fn) -> tuple[float, float]:  # noqa: ANN001
    """The best wall-clock and the best CPU time of n runs."""
    wall, cpu = [], []
    for _ in range(n):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return min(wall), min(cpu)


def main() -> None:
    lines = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    text = generate(lines)
    with tempfile.TemporaryDirectory() as tmp:
        file = str(Path(tmp) / "big.sage")
        Path(file).write_text(text)
        spec = check_text(text, file)  # warm: grammar load, caches
        parse_s = best_of(5, lambda: parse(text, file))
        total_s = best_of(5, lambda: check_text(text, file))
    print(f"{text.count(chr(10))} lines, {len(spec.tasks)} tasks, {len(spec.saes)} SAEs, {len(spec.evals)} evals")
    print(f"parse:         {parse_s[0]:.3f} s wall, {parse_s[1]:.3f} s CPU")
    print(f"parse + check: {total_s[0]:.3f} s wall, {total_s[1]:.3f} s CPU   (goal < 0.5 s)")


if __name__ == "__main__":
    main()
