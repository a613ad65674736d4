"""Shared set-up: the zoo's models and SAEs are registered, as sagec's entry points do
(runtime/execute imports runtime.zoo), so tests that load a zoo model directly find it."""

import runtime.zoo  # noqa: F401
