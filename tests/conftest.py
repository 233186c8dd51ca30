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


class InlineGrid:
    """A grid that calls the ClientApp in this process, one message after another:
    the same strategy, round loop and client code as a Flower run, in milliseconds."""

    def __init__(self, num_partitions: int):
        from flwr.app import Context, RecordDict

        from fedkd.pool_grid import NODE_ID_OFFSET, RUN_ID, _set_identity

        _set_identity()
        self.contexts = {
            NODE_ID_OFFSET + p: Context(run_id=RUN_ID, node_id=NODE_ID_OFFSET + p,
                                        node_config={"partition-id": p, "num-partitions": num_partitions},
                                        state=RecordDict(), run_config={})
            for p in range(num_partitions)}

    def get_node_ids(self):
        return list(self.contexts)

    def send_and_receive(self, messages, *, timeout=None):
        import uuid

        from fedkd.client.app import app

        replies = []
        for m in messages:
            m.metadata.__dict__["_message_id"] = uuid.uuid4().hex
            replies.append(app(m, self.contexts[m.metadata.dst_node_id]))
        return replies


def load_script(name: str):
    """A script of ``simulations/`` as a module, so tests can call its ``main``."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "simulations" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"simulations_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
