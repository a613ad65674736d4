"""Diagnostics: every user mistake, found by the parser, the checker or the runtime, is one of these.

A diagnostic names `file:line:col`, says what is wrong in words, and renders the source line with
a caret under the offending span. The runtime raises `SpecError` too (a multi-token answer found
while sampling prompts, an SAE that does not fit the model), building diagnostics from the
`Origin` the checked spec keeps on every construct, so late errors look like early ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sagec.spec import Origin


@dataclass(frozen=True)
class Diagnostic:
    file: str
    line: int  # 1-based
    column: int  # 1-based
    message: str
    end_line: int | None = None
    end_column: int | None = None  # exclusive, 1-based
    severity: str = "error"  # "error" | "warning"
    hint: str | None = None  # e.g. "did you mean 'names'?"

    @classmethod
    def at(cls, origin: Origin, message: str, hint: str | None = None) -> Diagnostic:
        return cls(origin.file, origin.line, origin.column, message, hint=hint)

    def location(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"

    def render(self, source: str | None = None) -> str:
        """`path:line:col: error: message`, the source line, a caret under the span, the hint."""
        lines = [f"{self.location()}: {self.severity}: {self.message}"]
        if source is None:
            source = _read(self.file)
        text_lines = source.splitlines() if source is not None else []
        if 1 <= self.line <= len(text_lines):
            text = text_lines[self.line - 1].expandtabs(1)
            start = max(self.column - 1, 0)
            if self.end_line == self.line and self.end_column is not None and self.end_column > self.column:
                width = self.end_column - self.column
            else:
                width = 1
            width = max(1, min(width, max(len(text) - start, 1)))
            lines.append(f"  {text}")
            lines.append("  " + " " * start + "^" * width)
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        out = {"file": self.file, "line": self.line, "column": self.column, "severity": self.severity, "message": self.message}
        if self.end_line is not None:
            out["end_line"], out["end_column"] = self.end_line, self.end_column
        if self.hint:
            out["hint"] = self.hint
        return out


class SpecError(Exception):
    """One or more problems in a spec, in source order. Exit status 2 at the command line."""

    def __init__(self, diagnostics: Iterable[Diagnostic]):
        self.diagnostics = tuple(sorted(diagnostics, key=lambda d: (d.file, d.line, d.column)))
        super().__init__("\n".join(d.render() for d in self.diagnostics))

    @classmethod
    def at(cls, origin: Origin, message: str, hint: str | None = None) -> SpecError:
        return cls([Diagnostic.at(origin, message, hint)])


def _read(file: str) -> str | None:
    try:
        return Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
