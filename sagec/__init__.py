"""sagec: a declarative language and compiler for ground-truth (SAGE) evaluation of SAEs.

The compiler side (parse, check, format, lower) never imports torch, nnsight or sae_lens; those
live in the `runtime` package and are imported only when something runs.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load_spec"]


def __getattr__(name: str):  # noqa: ANN202 - lazy, so `import sagec` stays light for the CLI
    if name == "load_spec":
        from sagec.check import load_spec

        return load_spec
    raise AttributeError(f"module 'sagec' has no attribute {name!r}")
