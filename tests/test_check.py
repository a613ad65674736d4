"""The checker: what a clean spec resolves to, and one test per error (message and location)."""

import time
from pathlib import Path

import pytest

import sagec
from sagec import spec as S
from sagec.check import check_text, load_spec
from sagec.diagnostics import SpecError

SPECS = Path(__file__).resolve().parent.parent / "specs"

BASE = """\
model m { source zoo "tiny" }
vocab names = ["A", "B", "C"]
task t {
  var io in names
  var s in names where s != io
  var place in ["x", "y"]
  template "When {{io}} and {{s}} at {{place}}, {{s}} gave to"
  answer " {{io}}" against " {{s}}"
  counterfactual resample io, s
  position s2 = token of s occurrence 2
  position end = last
  attributes io, s
  split by place: train 0.5, test 0.5
  samples 16 seed 1
}
sae res[l] for l in 0..1 { source sae_lens "rel" "blocks.{{l}}.hook_resid_pre" }
eval e {
  model m
  task t
  locate { components heads, mlp select top 4 }
  saes res[*]
}
"""


def checked(text: str, tmp_path: Path) -> S.Spec:
    return check_text(text, str(tmp_path / "spec.sage"))


def problems(text: str, tmp_path: Path):
    with pytest.raises(SpecError) as info:
        checked(text, tmp_path)
    return info.value.diagnostics


def mutate(old: str, new: str, text: str = BASE) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def where(text: str, needle: str, nth: int = 0) -> tuple[int, int]:
    """1-based line and column of the nth occurrence of `needle`."""
    index = -1
    for _ in range(nth + 1):
        index = text.index(needle, index + 1)
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def test_the_base_spec_resolves(tmp_path):
    spec = checked(BASE, tmp_path)
    task = spec.task("t")
    assert task.variable("io").domain == ("A", "B", "C")
    assert task.constraints == (S.Compare("!=", S.Var("s"), S.Var("io")),)
    assert task.position("s2") == S.Position("s2", "var", "s", 2, "first", 0, task.position("s2").origin)
    assert task.split.by == ("place",) and (task.samples, task.seed) == (16, 1)
    assert [s.name for s in spec.saes] == ["res[0]", "res[1]"]
    assert spec.sae("res[1]").sae_id == "blocks.1.hook_resid_pre" and spec.sae("res[1]").release == "rel"
    ev = spec.eval("e")
    assert ev.locate.components == ("head", "mlp_out")
    assert ev.locate.positions == ("s2", "end")  # every task position by default
    assert [u.sae for u in ev.saes] == ["res[0]", "res[1]"] and ev.saes[0].reconstruct == "residual"
    assert ev.report.out_dir == str(tmp_path / "runs" / "e")
    assert task.origin == S.Origin(str(tmp_path / "spec.sage"), 3, 1)


def test_locate_method_steps_and_selection_scope(tmp_path):
    plain = checked(BASE, tmp_path).evals[0].locate
    assert (plain.method, plain.steps, plain.top, plain.per_family) == ("attribution", None, 4, False)  # top 4 in total
    integrated = checked(mutate("select top 4", "method integrated select top 4 per family"), tmp_path).evals[0].locate
    assert (integrated.method, integrated.steps, integrated.per_family) == ("integrated", 8, True)  # the default path
    assert checked(mutate("select top 4", "method integrated steps 3 select top 4"), tmp_path).evals[0].locate.steps == 3


def test_shipped_specs_check_cleanly():
    for path in SPECS.glob("*.sage"):
        spec = load_spec(path)
        assert spec.tasks, path


def test_ioi_spec_is_the_method_task():
    spec = sagec.load_spec(SPECS / "ioi.sage")
    task = spec.task("ioi")
    assert set(task.attributes) == {"io", "s", "order"}
    assert [p.name for p in task.positions][:2] == ["io", "s1"] and task.position("end").kind == "last"
    assert task.position("s1p").offset == 1 and task.position("s1p").variable == "s"
    assert " Mary" not in task.variable("io").domain and "Mary" in task.variable("io").domain
    assert spec.model("smol").ref == "smollm2-135m"
    assert spec.eval("ioi_ground_truth").report.out_dir == str(SPECS / "runs" / "ioi")


def test_baselines_resolve_in_order_with_pca_truncated_or_not(tmp_path):
    spec = checked(mutate("saes res[*]", "saes res[*]\n  baselines pca, neurons, random, pca 8"), tmp_path)
    assert spec.evals[0].baselines == (S.Baseline("pca"), S.Baseline("neurons"), S.Baseline("random"), S.Baseline("pca", 8))
    assert [b.name for b in spec.evals[0].baselines] == ["pca", "neurons", "random", "pca 8"]
    assert checked(BASE, tmp_path).evals[0].baselines == ()  # none unless asked for


def test_answer_sets_and_positions_by_reference(tmp_path):
    text = mutate('answer " {{io}}" against " {{s}}"', 'answer "{{n}}" for n in 0..9 where n > 4 against "{{n}}" for n in [1, 2]')
    text = mutate("position end = last", "position end = last\n  position s3 = s2 - 1", text)
    task = checked(text, tmp_path).task("t")
    assert task.answer.is_set and task.answer.answer.domain == tuple(range(10))
    assert task.answer.answer.where == S.Compare(">", S.Var("n"), S.Const(4))
    assert task.position("s3").variable == "s" and task.position("s3").offset == -1 and task.position("s3").occurrence == 2


def test_model_settings_and_paths(tmp_path):
    (tmp_path / "weights").mkdir()
    text = mutate('model m { source zoo "tiny" }', 'model m { source path "weights" dtype bfloat16 device auto remote simulate batch_size 4 }')
    m = checked(text, tmp_path).model("m")
    assert (m.source, m.ref, m.dtype, m.device, m.remote, m.batch_size) == ("path", str(tmp_path / "weights"), "bfloat16", "auto", "simulate", 4)


def test_includes_resolve_relative_to_the_including_file(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "names.txt").write_text("# names\nA\n\nB\nC\n")
    (lib / "vocab.sage").write_text('vocab names from "names.txt"\n')
    (lib / "common.sage").write_text('include "vocab.sage"\nmodel m { source zoo "tiny" }\n')
    text = 'include "lib/common.sage"\ninclude "lib/vocab.sage"\n' + BASE.replace('model m { source zoo "tiny" }\n', "").replace('vocab names = ["A", "B", "C"]\n', "")
    spec = checked(text, tmp_path)
    assert spec.task("t").variable("io").domain == ("A", "B", "C")
    assert spec.model("m").origin.file == str(lib / "common.sage")


# --- one test per error: the message, and the line and column it points at --------------------


CASES = [
    # (id, old, new, message, where the caret goes (needle in the mutated text), hint)
    ("split-by-attribute", "split by place", "split by io", "cannot split by 'io': it is an attribute", "io:", "split by a non-attribute"),
    ("unknown-attribute", "attributes io, s", "attributes io, sx", "unknown variable 'sx'", "sx", "did you mean 's'?"),
    ("unknown-position-variable", "token of s occurrence", "token of q occurrence", "unknown variable 'q'", "q occ", None),
    ("unknown-counterfactual", "resample io, s", "resample io, zz", "unknown variable 'zz'", "zz", None),
    ("unknown-method", "select top 4", "method attributon select top 4", "unknown locate method 'attributon'", "attributon", "did you mean 'attribution'?"),
    ("unknown-metric", "saes res[*]", "saes res[*]\n  score sufficiency, necesity", "unknown metric 'necesity'", "necesity", "did you mean 'necessity'?"),
    ("unknown-component", "heads, mlp", "heads, mpl", "unknown component 'mpl'", "mpl select", "did you mean 'mlp'?"),
    ("unknown-dtype", 'source zoo "tiny"', 'source zoo "tiny" dtype float23', "unknown dtype 'float23'", "float23", "did you mean 'float32'?"),
    ("unknown-model-source", 'source zoo "tiny"', 'source hug "tiny"', "unknown model source 'hug'", "hug", "did you mean 'hub'?"),
    ("reversed-range", "l in 0..1", "l in 1..0", "the range 1..0 is reversed", "1..0", "did you mean 0..1?"),
    ("empty-domain", '["x", "y"]', "[]", "the domain is empty", "[]", None),
    ("unused-family-index", "blocks.{{l}}.hook", "blocks.0.hook", "family index 'l' is not used", "l]", None),
    ("family-index-mismatch", "res[l] for l", "res[k] for l", "must be the family index 'k'", "l in", None),
    ("unknown-model", "  model m\n", "  model mm\n", "unknown model 'mm'", "mm", "did you mean 'm'?"),
    ("unknown-task", "  task t\n", "  task tt\n", "unknown task 'tt'", "tt\n", "did you mean 't'?"),
    ("unknown-sae", "saes res[*]", "saes rez[*]", "unknown sae 'rez'", "rez", "did you mean 'res'?"),
    ("family-without-index", "saes res[*]", "saes res", "sae 'res' is a family", "res\n", "res[*]"),
    ("family-member-out-of-range", "saes res[*]", "saes res[5]", "has no member 5", "res[5]", None),
    ("unknown-locate-position", "select top 4", "positions end, s3 select top 4", "task 't' has no position 's3'", "s3", "s2"),
    ("duplicate-vocab", 'vocab names = ["A", "B", "C"]', 'vocab names = ["A", "B", "C"]\nvocab names = ["Z"]', "duplicate vocab 'names'", 'names = ["Z"]', None),
    ("duplicate-variable", '  var place in ["x", "y"]', '  var place in ["x", "y"]\n  var s in names', "duplicate variable 's'", "s in names\n", None),
    ("duplicate-position", "position end = last", "position end = last position s2 = last", "duplicate position 's2'", "s2 = last", None),
    ("template-syntax", "When {{io}} and", "When {{io and", "template syntax error", '"When', None),
    ("template-undeclared", "at {{place}}", "at {{plac}}", "uses '{{plac}}', which is not a variable here", '"When', "did you mean 'place'?"),
    ("constraint-undeclared", "where s != io", "where s != iox", "unknown variable 'iox' in the constraint on 's'", "iox", "did you mean 'io'?"),
    ("guard-undeclared", '  template "When', '  template when plcae == "x": "When', "unknown variable 'plcae' in the template's guard", "plcae", "did you mean 'place'?"),
    ("unknown-vocab", "in names where", "in namez where", "unknown vocab 'namez'", "namez", "did you mean 'names'?"),
    ("fractions-over-one", "train 0.5, test 0.5", "train 0.7, test 0.6", "train 0.7 + test 0.6 is more than 1", "split", None),
    ("fraction-zero", "train 0.5, test 0.5", "train 1, test 0", "must each lie in (0, 1]", "split", None),
    ("missing-include", "model m {", 'include "nope.sage"\nmodel m {', "cannot include 'nope.sage': no such file", '"nope.sage"', None),
    ("missing-vocab-file", 'vocab names = ["A", "B", "C"]', 'vocab names from "names.txt"', "vocab 'names': no such file", '"names.txt"', None),
    (
        "position-needs-variable-in-template", "  answer", '  template "{{s}}, {{s}}"\n  position p = token of place\n  answer',
        "position 'p' needs 'place' in every template", "place\n", None,
    ),
    ("position-cycle", "position end = last", "position end = last position a = b + 1 position b = a", "defined in terms of itself", "a\n", None),
    ("bad-hook", '"blocks.{{l}}.hook_resid_pre" }', '"blocks.{{l}}.hook_resid_pre" hook "resid_pr {{l}}" }', "bad hook", '"resid_pr', "did you mean 'resid_pre'?"),
    ("integrated-no-steps", "select top 4", "method integrated steps 0 select top 4", "needs at least 1 step on its path, got 0", "method integrated", None),
    ("steps-without-integrated", "select top 4", "method attribution steps 4 select top 4", "`steps` belongs to `method integrated`", "method attribution", None),
    ("setting-in-wrong-block", "select top 4", "select top 4 verify sometimes", "unknown verification 'sometimes'", "sometimes", None),
    ("missing-samples", "  samples 16 seed 1\n", "", "needs `samples N`", "t {", None),
    ("reserved-variable", '  var place in ["x", "y"]', '  var place in ["x", "y"]\n  var template in [1, 2]', "'template' is reserved", "template in", None),
    ("answer-binder-shadows", 'answer " {{io}}"', 'answer "{{s}}" for s in 0..2', "shadows a task variable", "s in 0", None),
    ("split-by-single-value", '["x", "y"]', '["x"]', "it has a single value", "place:", None),
    ("split-by-single-template", "split by place", "split by template", "the task has a single template", "template:", None),
    ("unknown-baseline", "saes res[*]", "saes res[*]\n  baselines pca, nuerons", "unknown baseline 'nuerons'", "nuerons", "did you mean 'neurons'?"),
    ("baseline-without-components", "saes res[*]", "saes res[*]\n  baselines random 8", "baseline 'random' takes no number of components", "random 8", "write just 'random'"),
    ("pca-without-components", "saes res[*]", "saes res[*]\n  baselines pca 0", "'pca 0' keeps no component", "pca 0", None),
    ("baseline-twice", "saes res[*]", "saes res[*]\n  baselines pca 4, neurons, pca 4", "baseline 'pca 4' is listed twice", "pca 4\n", None),
]


@pytest.mark.parametrize("old, new, message, needle, hint", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_error_is_reported_where_it_is(tmp_path, old, new, message, needle, hint):
    text = mutate(old, new)
    found = problems(text, tmp_path)
    matching = [d for d in found if message in d.message]
    assert matching, [d.message for d in found]
    d = matching[0]
    assert (d.line, d.column) == where(text, needle), d.render(text)
    if hint is not None:
        assert d.hint is not None and hint in d.hint, d.hint
    assert d.file.endswith("spec.sage") or d.file.endswith(".sage")


def test_a_counterfactual_must_be_able_to_change_something(tmp_path):
    text = mutate("counterfactual resample io, s", "counterfactual resample k")
    text = mutate('  var place in ["x", "y"]', '  var place in ["x", "y"]\n  var k in [1]', text)
    (d,) = problems(text, tmp_path)
    assert d.message.startswith("the counterfactual twin would equal the prompt")
    assert (d.line, d.column) == where(text, "counterfactual resample k")


def test_include_cycle_is_reported_at_the_include(tmp_path):
    (tmp_path / "a.sage").write_text('include "b.sage"\n')
    (tmp_path / "b.sage").write_text('vocab v = [1]\ninclude "a.sage"\n')
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "a.sage")
    (d,) = info.value.diagnostics
    assert d.message == "include cycle: a.sage -> b.sage -> a.sage"
    assert (d.file, d.line, d.column) == (str(tmp_path / "b.sage"), 2, 9)


def test_a_broken_template_is_reported_once(tmp_path):
    # not also as "position 's2' needs 's' in every template"
    found = problems(mutate("When {{io}} and", "When {{io and"), tmp_path)
    assert len(found) == 1 and found[0].message.startswith("template syntax error: ")


def test_every_problem_is_reported_at_once(tmp_path):
    text = mutate("attributes io, s", "attributes io, sx")
    text = mutate("heads, mlp", "heads, mpl", text)
    text = mutate("  model m\n", "  model mm\n", text)
    text = mutate("l in 0..1", "l in 1..0", text)
    found = problems(text, tmp_path)
    assert len(found) >= 4
    assert [d.line for d in found] == sorted(d.line for d in found)


def test_syntax_errors_in_included_files_name_that_file(tmp_path):
    (tmp_path / "common.sage").write_text("vocab v = [1,\n")
    found = problems('include "common.sage"\n', tmp_path)
    assert found[0].file == str(tmp_path / "common.sage") and found[0].line == 1


def test_templates_are_parsed_never_run(tmp_path):
    # a template that would take forever (and call methods) if it were rendered
    text = mutate("at {{place}}", "at {{place}}{% for i in range(10**12) %}{{ i.__class__ }}{% endfor %}")
    start = time.perf_counter()
    checked(text, tmp_path)
    assert time.perf_counter() - start < 2


def test_rendered_diagnostic_has_location_caret_and_hint(tmp_path):
    text = mutate("heads, mlp", "heads, mpl")
    (d,) = problems(text, tmp_path)
    out = d.render(text)
    assert out.splitlines()[0] == f"{tmp_path / 'spec.sage'}:20:30: error: unknown component 'mpl'"
    assert out.splitlines()[2] == " " * 31 + "^^^"
    assert out.splitlines()[3] == "  hint: did you mean 'mlp'?"


@pytest.mark.parametrize(
    "source",
    ["When {{io}} and {{ s }} went", "plain", "{{true}} {{x}}", "{{ x }} }} {", "{% if a %}{{b}}{% endif %}", "{{a.b}} {{c|upper}}", "{{x", "{# c #}{{y}}", "{{ none }}"],
)
def test_template_names_agree_with_jinja(source):
    import jinja2
    from jinja2 import meta
    from jinja2.sandbox import SandboxedEnvironment

    from sagec.check import template_names

    names, problem = template_names(source)
    try:
        expected = meta.find_undeclared_variables(SandboxedEnvironment().parse(source))
    except jinja2.TemplateSyntaxError:
        assert problem is not None
    else:
        assert problem is None and names == expected


def _reference_examples() -> list[str]:
    import re

    text = (SPECS.parent / "grammar" / "README.md").read_text()
    return re.findall(r"```sage\n(.*?)```", text, re.S)


def test_language_reference_examples_parse_and_check(tmp_path):
    from sagec.parse import parse

    examples = _reference_examples()
    assert len(examples) >= 10
    for example in examples:
        parse(example)
    checked(examples[0], tmp_path)
    harness = 'vocab names = ["Mary", "John", "Tom", "Anna"]\n'
    tasks = [e for e in examples[1:] if e.lstrip().startswith("task")]
    assert len(tasks) >= 6
    for example in tasks:
        checked(harness + example, tmp_path)
