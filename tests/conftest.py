"""Shared set-up: the zoo's models and SAEs are registered, as sagec's entry points do
(runtime/execute imports runtime.zoo), so tests that load a zoo model directly find it."""

import runtime.zoo  # noqa: F401
from tests.hub_cache import hub_cache, offline_hub  # noqa: F401  - the Hugging Face cache fixtures
