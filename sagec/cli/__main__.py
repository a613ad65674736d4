"""`python -m sagec.cli` is the `sagec` command (tests use it to run the installed code)."""

from sagec.cli import main

main()
