"""`sagec check` and `sagec fmt` at the command line, the shared error guard, and import hygiene."""

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from sagec.cli import main
from sagec.cli.errors import guarded
from sagec.diagnostics import Diagnostic, SpecError

SPECS = Path(__file__).resolve().parent.parent / "specs"
BROKEN = 'model m {\n  source zoo "x"\n  dtype float23\n}\n'


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_check_accepts_the_shipped_specs():
    result = run("check", *map(str, sorted(SPECS.glob("*.sage"))))
    assert result.exit_code == 0, result.output
    assert "ioi.sage: ok (1 model, 1 task, 90 SAEs, 1 eval)" in result.output


def test_check_reports_located_errors_and_exits_2(tmp_path):
    bad = tmp_path / "bad.sage"
    bad.write_text(BROKEN)
    result = run("check", str(bad))
    assert result.exit_code == 2
    assert f"{bad}:3:9: error: unknown dtype 'float23'" in result.stderr
    assert "        ^^^^^^^" in result.stderr and "hint: did you mean 'float32'?" in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_check_json_lists_all_files_problems(tmp_path):
    (tmp_path / "a.sage").write_text(BROKEN)
    (tmp_path / "b.sage").write_text("model {")
    result = run("check", "--json", str(tmp_path / "a.sage"), str(tmp_path / "b.sage"), str(tmp_path / "missing.sage"))
    assert result.exit_code == 2
    out = json.loads(result.stdout)
    assert out["ok"] is False
    assert [(d["file"].rsplit("/", 1)[1], d["line"], d["column"]) for d in out["diagnostics"]] == [
        ("a.sage", 3, 9), ("b.sage", 1, 7), ("missing.sage", 1, 1),
    ]
    assert out["diagnostics"][0]["hint"] == "did you mean 'float32'?"


def test_deep_without_the_runtime_check_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "runtime.execute.deep_check", None)  # importing it now fails
    result = run("check", "--deep", str(SPECS / "ioi.sage"))
    assert result.exit_code == 1
    assert "--deep needs runtime.execute.deep_check" in result.stderr


def test_fmt_check_and_rewrite(tmp_path):
    f = tmp_path / "x.sage"
    f.write_text('model m{source zoo "x"   # keep me\n}\n')
    result = run("fmt", "--check", str(f))
    assert result.exit_code == 1 and "would reformat" in result.output
    assert run("fmt", str(f)).exit_code == 0
    assert f.read_text() == 'model m {\n  source zoo "x"  # keep me\n}\n'
    assert run("fmt", "--check", str(f)).exit_code == 0
    assert run("fmt", "--check", str(SPECS / "ioi.sage")).exit_code == 0


def test_fmt_on_a_syntax_error_exits_2(tmp_path):
    f = tmp_path / "x.sage"
    f.write_text("model m {")
    result = run("fmt", str(f))
    assert result.exit_code == 2 and "unexpected end of file" in result.stderr
    assert f.read_text() == "model m {"


def _boom():
    raise RuntimeError("kaput")


def test_guard_turns_bugs_into_one_line_and_spec_errors_into_exit_2(capsys):
    with pytest.raises(click.exceptions.Exit) as info:
        guarded(_boom)
    assert info.value.exit_code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: RuntimeError: kaput" in err and "report" in err
    with pytest.raises(click.exceptions.Exit) as info:
        guarded(_boom, debug=True)
    assert "Traceback" in capsys.readouterr().err
    with pytest.raises(click.exceptions.Exit) as info:
        guarded(lambda: (_ for _ in ()).throw(SpecError([Diagnostic("f.sage", 2, 3, "nope")])))
    assert info.value.exit_code == 2 and "f.sage:2:3: error: nope" in capsys.readouterr().err
    assert guarded(lambda: 42) == 42


def test_the_compiler_never_imports_the_heavy_stack():
    code = (
        "import sys, sagec.cli, sagec.check, sagec.fmt, sagec;"
        "from sagec.cli import main;"
        "sagec.load_spec(sys.argv[1]);"
        "bad = [m for m in ('torch', 'nnsight', 'sae_lens', 'transformers') if m in sys.modules];"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(SPECS / "ioi.sage")], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_sagec_console_script_exit_status(tmp_path):
    bad = tmp_path / "bad.sage"
    bad.write_text(BROKEN)
    out = subprocess.run([sys.executable, "-c", "from sagec.cli import main; main()", "check", str(bad)], capture_output=True, text=True)
    assert out.returncode == 2 and "unknown dtype" in out.stderr and "Traceback" not in out.stderr
