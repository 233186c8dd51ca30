"""What tests share: a tiny configuration and a way to load the scripts of ``simulations/``."""

import importlib.util
from pathlib import Path

from fedkd import rules
from fedkd.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]


def tiny_config() -> RunConfig:
    """5 clients, 2 rounds on scikit-learn digits: loads in milliseconds."""
    return rules.complete(RunConfig(
        clients=5, rounds=2, dataset="digits", public_size=300, public_subset=200,
        models="mlp-s,cnn-s", server_model="cnn-s", init_epochs=10, distill_epochs=1, local_epochs=1, fraction=0.6,
    ))


def load_script(name: str):
    """A script of ``simulations/`` as a module, so tests can call its ``main``."""
    path = ROOT / "simulations" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"simulations_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
