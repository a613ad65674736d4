"""The sample pass: assignments, rendering, positions, twins, the split, the artifact, the errors."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from runtime.task.assignments import split_domains
from runtime.task.prompts import PromptSet, build_prompt_set, pad, render, render_answer, sample_assignments
from sagec.diagnostics import SpecError
from sagec.expr import truth
from sagec.spec import Answer, AnswerSide, BoolOp, Compare, Const, Position, Split, Template, Var, Variable
from tests.ioi_fixture import NAMES, PLACES, WORDS, at, fingerprint, ioi


def word_tokenizer(words=NAMES + PLACES + tuple(WORDS)) -> PreTrainedTokenizerFast:
    """STACK.md section 2: a WordLevel tokenizer that splits on spaces and punctuation."""
    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "<bos>", "<eos>", *dict.fromkeys(words)])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>", pad_token="<pad>")


def bpe_tokenizer() -> PreTrainedTokenizerFast:
    """A GPT-2-style byte-level BPE with a small vocabulary, so rare names span several tokens and
    token offsets include the leading space (no trim_offsets post-processor)."""
    corpus = [f"When {a} and {b} went to the {p}, {b} gave a drink to {a}" for a in NAMES[:4] for b in NAMES[:4] for p in PLACES]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=330, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<|endoftext|>"], show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", unk_token="<|endoftext|>")


@pytest.fixture(scope="module")
def words():
    return word_tokenizer()


@pytest.fixture(scope="module")
def bpe():
    return bpe_tokenizer()


def artifact_bytes(ps: PromptSet) -> tuple[bytes, str]:
    tensors, _ = ps.to_artifact()
    return st_save(tensors), ps.meta_json()


# --- assignments and rendering ------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(1, 30))
def test_assignments_satisfy_constraints_and_guards(seed, n):
    task = ioi(constraints=(Compare("!=", Var("s"), Var("io")), BoolOp("or", (Compare("!=", Var("io"), Const("Tom")), Compare("==", Var("place"), Const("park"))))))
    drawn = sample_assignments(task, n, seed)
    assert len(drawn) == n
    for a in drawn:
        assert set(a) == {"io", "s", "place", "order", "template"}
        assert all(truth(c, a) for c in task.constraints)
        assert truth(task.templates[a["template"]].guard, a)
    assert drawn == sample_assignments(task, n, seed)


def test_assignments_depend_on_the_seed():
    task = ioi()
    assert sample_assignments(task, 20, 0) != sample_assignments(task, 20, 1)


def test_render_and_answers():
    task = ioi()
    a = {"io": "Mary", "s": "John", "place": "park", "order": "BAB", "template": 1}
    assert render(task, a) == "When John and Mary went to the park, John gave a drink to"
    assert render_answer(task, a) == ((" Mary",), (" John",))


def test_answer_sets_render_once_per_value_that_passes_the_filter():
    # greater-than: the answer is any two-digit year above yy, the distractor any at or below it
    task = ioi(
        variables=(Variable("yy", (3, 5), at(3)),),
        constraints=(),
        templates=(Template("from the year 17{{yy}} to the year 17", None, at(7)),),
        answer=Answer(
            AnswerSide("{{d}}", "d", (2, 4, 6), Compare(">", Var("d"), Var("yy"))),
            AnswerSide("{{d}}", "d", (2, 4, 6), Compare("<=", Var("d"), Var("yy"))),
            at(9),
        ),
    )
    assert render_answer(task, {"yy": 3, "template": 0}) == (("4", "6"), ("2",))
    assert render_answer(task, {"yy": 5, "template": 0}) == (("6",), ("2", "4"))


def test_templates_are_sandboxed_and_strict():
    task = ioi(templates=(Template("{{ io.__class__.__mro__ }} {{ nobody }}", None, at(7)),))
    with pytest.raises(SpecError) as e:
        render(task, {"io": "Mary", "s": "John", "place": "park", "order": "ABB", "template": 0})
    assert "ioi.sage:7:3" in str(e.value) and "template 0" in str(e.value)


def test_no_satisfying_assignment_names_the_constraint_and_its_line():
    task = ioi(constraints=(Compare("!=", Var("s"), Var("io")), Compare("==", Var("s"), Var("io"))))
    with pytest.raises(SpecError) as e:
        sample_assignments(task, 1, 0)
    (d,) = e.value.diagnostics
    assert (d.line, "s == io") == (4, d.message.split("`")[1])
    assert "together with the constraints before it" in d.message


def test_no_applicable_template_points_at_the_templates():
    task = ioi(variables=ioi().variables[:3] + (Variable("order", ("ABA",), at(6)),))
    with pytest.raises(SpecError, match="no template's guard holds") as e:
        sample_assignments(task, 1, 0)
    assert e.value.diagnostics[0].line == 7


# --- positions --------------------------------------------------------------------------------


def test_positions_on_a_word_level_tokenizer_by_hand(words):
    ps = build_prompt_set(ioi(), words)
    p = next(p for p in ps.prompts if p.template == 0)
    # When io and s went to the place , s gave a drink to
    # 0    1  2   3 4    5  6   7     8 9 10   11 12    13
    assert p.positions == {"io": 1, "s1p": 4, "s2": 9, "end": 13}
    q = next(p for p in ps.prompts if p.template == 1)
    assert q.positions == {"io": 3, "s1p": 2, "s2": 9, "end": 13}
    for p in ps.prompts + ps.counterfactual + ps.twins["order"]:
        toks = words.convert_ids_to_tokens(list(p.ids))
        assert toks[p.positions["io"]] == p.assignment["io"]
        assert toks[p.positions["s2"]] == p.assignment["s"] == toks[p.positions["s1p"] - 1]
        assert p.positions["end"] == len(p.ids) - 1
        assert [words.convert_ids_to_tokens(p.answer_ids[0])] == [p.assignment["io"]]


def test_positions_when_a_value_spans_several_tokens(bpe):
    long = ("Bartholomew", "Mary", "John")
    task = ioi(
        variables=(Variable("io", long, at(3)), Variable("s", ("Mary", "John", "Alice"), at(4))) + ioi().variables[2:],
        answer=Answer(AnswerSide(" {{s}}"), AnswerSide(" {{place}}"), at(9)),
    )
    task = dataclasses.replace(
        task,
        positions=(
            Position("io_first", "var", "io", 1, "first", 0, at(11)),
            Position("io_last", "var", "io", 1, "last", 0, at(12)),
            Position("after", "var", "io", 1, "last", 1, at(13)),
        ),
        attributes=("io",),
        samples=24,
    )
    ps = build_prompt_set(task, bpe)
    spanned = 0
    for p in ps.prompts:
        first, last = p.positions["io_first"], p.positions["io_last"]
        assert bpe.decode(list(p.ids[first : last + 1])).strip() == p.assignment["io"]
        assert not bpe.decode(list(p.ids[first : first + 1])).strip().startswith(("and", "When"))
        assert p.positions["after"] == last + 1
        spanned += last > first
    assert spanned and spanned < len(ps.prompts)  # Bartholomew spans several tokens, Mary one


def test_a_value_inside_a_longer_token_is_not_an_occurrence(words):
    task = ioi(
        variables=(Variable("io", ("Ann",), at(3)), Variable("s", ("Anna",), at(4))) + ioi().variables[2:],
        attributes=("order",),
        counterfactual=(),
        positions=(Position("io", "var", "io", 1, "first", 0, at(11)),),
        answer=Answer(AnswerSide(" {{s}}"), AnswerSide(" {{s}}"), at(9)),
        templates=(Template("When {{s}} and {{io}} went", Compare("==", Var("order"), Const("ABB")), at(7)), ioi().templates[1]),
    )
    ps = build_prompt_set(task, word_tokenizer(NAMES + PLACES + tuple(WORDS) + ("Ann", "Anna")))
    assert {p.positions["io"] for p in ps.prompts if p.template == 0} == {3}


def test_missing_position_names_value_template_and_line(words):
    task = ioi(positions=ioi().positions + (Position("io2", "var", "io", 2, "first", 0, at(15)),))
    with pytest.raises(SpecError) as e:
        build_prompt_set(task, words)
    diags = [d for d in e.value.diagnostics if "io2" in d.message]
    assert len(diags) == 2 and all(d.line == 15 for d in diags)  # one per template, not per value
    assert "2nd occurrence of io" in diags[0].message
    assert re.search(r"io = '\w+'.* from template [01] \(line [78]\)", diags[0].message)
    assert "it occurs once" in diags[0].message


def test_position_offset_outside_the_prompt(words):
    task = ioi(positions=(Position("past", "last", None, 1, "last", 1, at(15)),))
    with pytest.raises(SpecError, match="falls outside the 14 tokens"):
        build_prompt_set(task, words)


def test_multi_token_answer_names_value_template_and_line(bpe):
    task = ioi(variables=(Variable("io", ("Bartholomew", "Mary", "John"), at(3)), Variable("s", ("Alice", "Bob"), at(4))) + ioi().variables[2:])
    with pytest.raises(SpecError) as e:
        build_prompt_set(task, bpe)
    msgs = e.value.diagnostics
    assert len(msgs) == 1  # one per distinct problem, not one per prompt
    (d,) = msgs
    assert d.line == 9 and "answer ' Bartholomew'" in d.message and "must be exactly one token" in d.message
    assert "template" in d.message and "io = 'Bartholomew'" in d.message


def test_unknown_answer_token_is_an_error(words):
    task = ioi(answer=Answer(AnswerSide(" {{io}}"), AnswerSide(" nobody"), at(9)))
    with pytest.raises(SpecError, match="distractor ' nobody'.*unknown token"):
        build_prompt_set(task, words)


# --- twins --------------------------------------------------------------------------------------


def differs(a, b) -> set[str]:
    return {k for k in a if a[k] != b[k]}


def test_twins_differ_in_exactly_the_intended_variables(words):
    ps = build_prompt_set(ioi(), words)
    n = len(ps.prompts)
    assert len(ps.counterfactual) == n and all(len(ps.twins[a]) == n for a in ps.attributes)
    for i, p in enumerate(ps.prompts):
        cf = ps.counterfactual[i]
        assert differs(p.assignment, cf.assignment) and differs(p.assignment, cf.assignment) <= {"io", "s"}
        assert differs(p.assignment, ps.twins["io"][i].assignment) == {"io"}
        assert differs(p.assignment, ps.twins["s"][i].assignment) == {"s"}
        # the order twin flips the template and keeps the names
        assert differs(p.assignment, ps.twins["order"][i].assignment) == {"order", "template"}
        for group in ps.groups().values():
            assert group[i].split == p.split
            assert group[i].text != p.text or group is ps.prompts
            assert group[i].assignment["s"] != group[i].assignment["io"]


def test_template_attribute_twin_changes_only_the_template(words):
    templates = (Template("When {{io}} and {{s}} went to the {{place}}, {{s}} gave a drink to", None, at(7)), Template("Then {{io}} and {{s}} went to the {{place}}, {{s}} said to", None, at(8)))
    ps = build_prompt_set(ioi(templates=templates, attributes=("io", "template"), variables=ioi().variables[:3]), words)
    for p, t in zip(ps.prompts, ps.twins["template"]):
        assert differs(p.assignment, t.assignment) == {"template"}


def test_attribute_that_cannot_change_alone(words):
    # with two names and s != io, io cannot change while s stays
    two = ("Mary", "John")
    task = ioi(variables=(Variable("io", two, at(3)), Variable("s", two, at(4))) + ioi().variables[2:])
    with pytest.raises(SpecError, match="attribute io cannot change alone") as e:
        build_prompt_set(task, words)
    assert {d.line for d in e.value.diagnostics} >= {3, 4}


# --- split ----------------------------------------------------------------------------------------


def test_split_is_disjoint_in_split_variables_and_covers_attributes(words):
    ps = build_prompt_set(ioi(samples=40), words)
    train = [ps.prompts[i] for i in ps.indices("train")]
    test = [ps.prompts[i] for i in ps.indices("test")]
    assert (len(train), len(test)) == (20, 20)
    assert not {p.assignment["place"] for p in train} & {p.assignment["place"] for p in test}
    for attr in ("io", "s", "order"):
        assert {p.assignment[attr] for p in train} == set(ioi().variable(attr).domain)
    assert ps.summary()["splits"] == {"train": 20, "test": 20}


def test_split_by_template(words):
    task = ioi(attributes=("io", "s"), split=Split(("template",), 0.5, 0.5, at(16)), variables=ioi().variables[:3] + (Variable("order", ("ABB", "BAB"), at(6)),))
    ps = build_prompt_set(task, words)
    assert {ps.prompts[i].template for i in ps.indices("train")}.isdisjoint({ps.prompts[i].template for i in ps.indices("test")})


def test_plain_random_split(words):
    ps = build_prompt_set(ioi(split=Split((), 0.75, 0.25, at(16)), samples=40), words)
    assert (len(ps.indices("train")), len(ps.indices("test"))) == (30, 10)


def test_attribute_value_that_train_cannot_show_is_named():
    test_place = split_domains(ioi())["test"]["place"][0]
    # Bob may only go to a place that the split deals to test
    only = BoolOp("or", (Compare("!=", Var("io"), Const("Bob")), Compare("==", Var("place"), Const(test_place))))
    task = ioi(constraints=(Compare("!=", Var("s"), Var("io")), only))
    with pytest.raises(SpecError) as e:
        build_prompt_set(task, word_tokenizer())
    (d,) = e.value.diagnostics
    assert d.line == 3 and "io = 'Bob' never occurs in the train split" in d.message


def test_too_few_samples_to_cover_attributes(words):
    with pytest.raises(SpecError, match="too few to show each"):
        build_prompt_set(ioi(samples=8), words)


# --- determinism and the artifact -------------------------------------------------------------------


def test_same_seed_same_bytes_different_seed_different(words):
    a, b = build_prompt_set(ioi(), words), build_prompt_set(ioi(), word_tokenizer())
    assert a == b and artifact_bytes(a) == artifact_bytes(b)
    c = build_prompt_set(ioi(seed=1), words)
    assert [p.text for p in c.prompts] != [p.text for p in a.prompts]
    assert artifact_bytes(a)[0] != artifact_bytes(c)[0]


def test_artifact_round_trip_is_exact(words):
    task = ioi(
        answer=Answer(AnswerSide(" {{n}}", "n", NAMES, Compare("==", Var("n"), Var("io"))), AnswerSide(" {{n}}", "n", NAMES, Compare("!=", Var("n"), Var("io"))), at(9))
    )
    ps = build_prompt_set(task, words)
    assert len(ps.prompts[0].distractor_ids) == len(NAMES) - 1
    tensors, meta = ps.to_artifact()
    back = PromptSet.from_artifact(st_load(st_save(tensors)), json.loads(json.dumps(meta)))
    assert back == ps
    assert artifact_bytes(back) == artifact_bytes(ps)
    assert [type(v) for v in back.prompts[0].assignment.values()] == [type(v) for v in ps.prompts[0].assignment.values()]


def test_int_values_survive_the_artifact(words):
    task = ioi(variables=ioi().variables + (Variable("k", (1, 2), at(7)),), split=Split(("k",), 0.5, 0.5, at(16)))
    ps = build_prompt_set(task, words)
    back = PromptSet.from_artifact(*ps.to_artifact())
    assert back == ps and {type(p.assignment["k"]) for p in back.prompts} == {int}


def test_summary_and_padding(words):
    ps = build_prompt_set(ioi(), words)
    s = ps.summary()
    assert s["prompts"] == 48 and sum(s["templates"].values()) == 48 and len(s["examples"]) == 2
    assert s["twins"] == ["counterfactual", "twin:io", "twin:s", "twin:order"]
    short = dataclasses.replace(ps.prompts[0], ids=ps.prompts[0].ids[:5], positions={n: 1 for n in ps.position_names})
    ids, mask, pos = pad([ps.prompts[0], short], pad_id=0)
    assert ids.shape == (2, 14) and mask[1].tolist() == [0] * 9 + [1] * 5
    assert pos["io"].tolist() == [ps.prompts[0].positions["io"], 10]
    assert ids[1, 10].item() == ps.prompts[0].ids[1]


def test_assignments_do_not_depend_on_the_process():
    """Set iteration order changes with PYTHONHASHSEED; no draw, twin or split may follow it.
    (Tokenization is a function of the text, so the pure-Python part is what can vary.)"""
    import os
    import subprocess
    import sys

    code = "from tests.ioi_fixture import fingerprint; print(fingerprint())"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.stdout.strip() == fingerprint()



def test_problems_are_capped_with_a_count_of_the_rest():
    many = tuple(f"Name{i}" for i in range(30))
    task = ioi(variables=(Variable("io", many, at(3)),) + ioi().variables[1:], samples=400, attributes=("s", "order"))
    with pytest.raises(SpecError) as e:
        build_prompt_set(task, word_tokenizer(NAMES + PLACES + tuple(WORDS) + many[:5]))
    messages = [d.message for d in e.value.diagnostics]
    assert sum("unknown token" in m for m in messages) == 20
    assert any(re.search(r"task ioi: \d+ more problems", m) for m in messages)


def test_positions_count_a_beginning_of_sequence_token():
    from tokenizers import processors

    tok = word_tokenizer()
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", tok.bos_token_id)])
    positions = (
        Position("first", "first", None, 1, "first", 0, at(11)),
        Position("io", "var", "io", 1, "first", 0, at(12)),
        Position("before_end", "last", None, 1, "last", -1, at(13)),
    )
    ps = build_prompt_set(ioi(positions=positions), tok)
    for p in ps.prompts:
        assert p.ids[0] == tok.bos_token_id and len(p.ids) == 15
        assert p.positions["first"] == 1  # the first token of the text, not the BOS
        assert p.positions["before_end"] == 13
        assert tok.convert_ids_to_tokens(p.ids[p.positions["io"]]) == p.assignment["io"]
        assert p.positions["io"] == (2 if p.template == 0 else 4)


@settings(max_examples=15, deadline=None)
@given(names=st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=10), min_size=3, max_size=5, unique=True))
def test_var_positions_cover_exactly_the_value_on_bpe(names):
    """Any names, including prefixes of one another and of template words: the tokens a
    position spans decode to the value, and the first occurrence is the first mention."""
    tok = _BPE.get("tok") or _BPE.setdefault("tok", bpe_tokenizer())
    names = tuple(n for n in names if n not in {"When", "and", "went", "to", "the", "gave", "a", "drink"} | set(PLACES))
    if len(names) < 3:
        return
    task = ioi(
        variables=(Variable("io", names, at(3)), Variable("s", names, at(4))) + ioi().variables[2:],
        answer=Answer(AnswerSide(" {{place}}"), AnswerSide(" {{place}}"), at(9)),
        positions=(Position("io_first", "var", "io", 1, "first", 0, at(11)), Position("io_last", "var", "io", 1, "last", 0, at(12)), Position("s2", "var", "s", 2, "first", 0, at(13))),
        samples=16,
        attributes=("order",),
    )
    ps = build_prompt_set(task, tok)
    for p in ps.prompts:
        first, last = p.positions["io_first"], p.positions["io_last"]
        assert tok.decode(list(p.ids[first : last + 1])).strip() == p.assignment["io"]
        words = p.text.replace(",", " ,").split()
        assert tok.decode(list(p.ids[: first])).replace(",", " ,").split() == words[: words.index(p.assignment["io"])]
        s2 = p.positions["s2"]
        assert s2 > last and p.assignment["s"].startswith(tok.decode([p.ids[s2]]).strip())


_BPE: dict = {}


def test_a_value_that_bpe_splits_out_of_a_longer_word_is_not_an_occurrence(bpe):
    assert bpe.tokenize(" Bartholomew")[:3] == ["Ġ", "B", "ar"]  # "Bar" sits on token boundaries inside it
    task = ioi(
        variables=(Variable("io", ("Bar",), at(3)), Variable("s", ("Bartholomew",), at(4)), Variable("place", PLACES, at(5)), Variable("order", ("BAB",), at(6))),
        attributes=("place",),
        counterfactual=(),
        split=Split((), 0.5, 0.5, at(16)),
        answer=Answer(AnswerSide(" {{place}}"), AnswerSide(" {{place}}"), at(9)),
        positions=(Position("io", "var", "io", 1, "first", 0, at(11)),),
        samples=8,
    )
    ps = build_prompt_set(task, bpe)
    for p in ps.prompts:  # "When Bartholomew and Bar went ..."
        assert bpe.decode(list(p.ids[: p.positions["io"]])).rstrip().endswith("Bartholomew and")
