"""sagec: a declarative language and compiler for ground-truth (SAGE) evaluation of SAEs.

The compiler side (parse, check, format, lower) never imports torch, nnsight or sae_lens; those
live in the `runtime` package and are imported only when something runs.
"""

__version__ = "0.1.0"
