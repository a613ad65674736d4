"""Rendering a task's templates and answers: sandboxed Jinja2 over an assignment."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from runtime.task.assignments import holds, show_env
from sagec.diagnostics import SpecError
from sagec.names import TEMPLATE_VARIABLE
from sagec.spec import AnswerSide, Origin, Task, Value

# Sandboxed: a spec is data a user may have been sent, and a template must not reach Python.
# StrictUndefined: a misspelt variable is an error, never an empty string in a prompt.
_JINJA = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)


@lru_cache(maxsize=None)
def _compiled(text: str) -> jinja2.Template:
    return _JINJA.from_string(text)


def render_text(text: str, env: Mapping[str, Value], origin: Origin, what: str) -> str:
    try:
        return _compiled(text).render(dict(env))
    except jinja2.TemplateError as e:
        raise SpecError.at(origin, f"{what} {text!r} cannot be rendered with {show_env(env)}: {e}") from None


def render(task: Task, assignment: Mapping[str, Value]) -> str:
    """The prompt text of an assignment, through the template it names."""
    index = int(assignment[TEMPLATE_VARIABLE])
    template = task.templates[index]
    return render_text(template.text, assignment, template.origin, f"template {index}")


def _render_side(task: Task, side: AnswerSide, assignment: Mapping[str, Value], what: str) -> tuple[str, ...]:
    origin = task.answer.origin
    if not side.is_set:
        return (render_text(side.template, assignment, origin, what),)
    out = []
    for value in side.domain:
        env = {**assignment, side.binder: value}
        if side.where is None or holds(task, side.where)(env):
            out.append(render_text(side.template, env, origin, what))
    if not out:
        raise SpecError.at(origin, f"the {what} set {side.template!r} is empty for {show_env(assignment)}")
    return tuple(out)


def render_answer(task: Task, assignment: Mapping[str, Value]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(answer strings, distractor strings): one each for a single-token answer, the filtered
    renderings over the binder's domain for a token set."""
    return (
        _render_side(task, task.answer.answer, assignment, "answer"),
        _render_side(task, task.answer.distractor, assignment, "distractor"),
    )
