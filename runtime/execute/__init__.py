"""Running a plan: the executor, progress on the terminal, `sagec run` and `sagec check --deep`."""
