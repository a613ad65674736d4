"""The message for a zoo name that does not exist: the closest known names, then the catalogue.

Its own module because every part of the zoo (tasks, models, SAEs) reports unknown names, and
the task definitions must not import the training code that imports them."""

from __future__ import annotations


def unknown(what: str, name: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    shown = ", ".join(known[:12]) + (f", ... ({len(known)} in all)" if len(known) > 12 else "")
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    return f"unknown {what} {name!r}; {hint}the zoo has {shown}"
