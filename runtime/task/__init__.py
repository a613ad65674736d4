"""The task layer: variable assignments, rendering, tokenized prompt sets and the task metric."""
