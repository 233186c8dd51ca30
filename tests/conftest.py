"""Fixtures: a private cache folder, a tiny configuration, a run identity for messages
built outside a running app, and the ``slow`` marker's meaning."""

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


@pytest.fixture
def run_identity(monkeypatch):
    """Messages built outside a running app need a run identity (Flower's engines set it)."""
    from flwr.supercore.task_identity import TaskIdentity

    for attr, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, attr, value)
