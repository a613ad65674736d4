"""Finished runs of the tiny project, made once per test session and shared by the results,
report, export and diff tests (a run takes tens of seconds; reading one takes milliseconds).

`finished(seed)` runs `sagec run` in-process on tests/tiny_pipeline.py's project, with patching
verification on (so the report has patching effects), the baselines (`pca 4` truncated, so it has
real sufficiency and necessity) and html among the report formats, and returns the run folder and
what the command printed. Readers must not modify the folder.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from click.testing import CliRunner

from sagec.cli import main
from tests.tiny_pipeline import make_project


@dataclass(frozen=True)
class Run:
    folder: Path
    output: str


@cache
def _root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="sagec-tiny-runs-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


@cache
def finished(seed: int = 0) -> Run:
    project = _root() / f"seed{seed}"
    project.mkdir()
    spec = make_project(project)
    text = spec.read_text()
    for old, new in (("samples 32 seed 0", f"samples 32 seed {seed}"), ("select top 2 per family }", "select top 2 per family  verify patching }"), ("as json", "as html, json"), ("  score ", "  baselines pca, neurons, random, pca 4\n  score ")):
        assert old in text, f"tests/tiny_pipeline.py's spec changed: {old!r} is gone"
        text = text.replace(old, new)
    spec.write_text(text)
    out = project / "out"
    result = CliRunner().invoke(main, ["run", str(spec), "--out", str(out), "--cache-dir", str(_root() / "cache"), "--quiet"])
    assert result.exit_code == 0, result.output
    return Run(out, result.output)
