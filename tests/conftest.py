"""Fixtures: a private cache folder, a tiny configuration, and the ``slow`` marker's meaning."""

import pytest

from fedkd.config import RunConfig
from tests.helpers import tiny_config


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Generated data and partitions go to a per-session folder, not ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FEDKD_CACHE", str(tmp_path_factory.mktemp("fedkd-cache")))
    yield
    mp.undo()


@pytest.fixture
def tiny() -> RunConfig:
    return tiny_config()
