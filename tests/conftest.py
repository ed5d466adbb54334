"""Loads the shared harness (tests/harness.py) before any test module.

The harness points HF_ENDPOINT / HF_HOME at the session mirror before anything imports
huggingface_hub. Tests import helpers from `harness`, never from `conftest`: a subfolder's own
conftest.py would shadow a module of that name.
"""

from harness import cache_dir, hub, pytest_sessionfinish  # noqa: F401  (fixtures and the cleanup hook)
