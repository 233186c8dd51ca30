"""Shared fixtures: a private cache folder and a tiny configuration."""

import pytest

from fedkd.config import RunConfig


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Generated data and partitions go to a per-session folder, not ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FEDKD_CACHE", str(tmp_path_factory.mktemp("fedkd-cache")))
    yield
    mp.undo()


def tiny_config() -> RunConfig:
    """5 clients, 2 rounds on scikit-learn digits: loads in milliseconds."""
    return RunConfig().replace(
        clients=5, rounds=2, dataset="digits", public_size=300, public_subset=200,
        models="mlp-s,cnn-s", init_epochs=10, distill_epochs=1, local_epochs=1, fraction=0.6,
    )


@pytest.fixture
def tiny() -> RunConfig:
    return tiny_config()



def load_script(name: str):
    """A script of ``simulations/`` as a module, so tests can call its ``main``."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "simulations" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"simulations_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
