import tomllib
from pathlib import Path

import pytest

from fedkd import rules
from fedkd.config import ConfigError, RunConfig

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_defaults_equal_code_defaults():
    app_config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert app_config == RunConfig().to_run_config()


def test_round_trip_through_run_config():
    config = RunConfig().replace(clients=7, alpha=0.1, models="cnn-s")
    assert RunConfig.from_run_config(config.to_run_config()) == config


def test_strings_from_the_command_line_are_coerced():
    config = RunConfig.from_run_config({"clients": "12", "alpha": "0.3"})
    assert config.clients == 12 and config.alpha == 0.3


@pytest.mark.parametrize("key, value, words", [
    ("strategy", "fedxyz", "allowed: fedmd"),
    ("dataset", "cifar", "allowed: mnist1d, digits"),
    ("partition", "random", "allowed: iid, dirichlet, pathological"),
    ("models", "cnn-s,resnet", "unknown model 'resnet'"),
    ("alpha", 0, "must be > 0"),
    ("alpha", -1.5, "must be > 0"),
    ("rounds", 0, "must be >= 1"),
    ("fraction", 0, "(0, 1]"),
    ("fraction", 1.5, "(0, 1]"),
    ("clients", "ten", "expected int"),
    ("no-such-key", 1, "unknown key"),
])
def test_bad_values_name_key_value_and_what_is_allowed(key, value, words):
    with pytest.raises(ConfigError) as err:
        rules.load({key: value})
    assert err.value.key == key
    assert words in str(err.value) and repr(value) in str(err.value)


def test_data_dependent_limits():
    with pytest.raises(ConfigError, match="public-size"):
        rules.complete(RunConfig(dataset="digits", public_size=361))
    with pytest.raises(ConfigError, match="at most 215 clients"):
        rules.complete(RunConfig(dataset="digits", clients=216, public_size=300, public_subset=200))
    rules.complete(RunConfig(dataset="digits", clients=215, public_size=300, public_subset=200))


def test_models_are_assigned_round_robin():
    config = RunConfig(models="mlp-s,cnn-s,cnn-m")
    assert [config.model_for(p) for p in range(5)] == ["mlp-s", "cnn-s", "cnn-m", "mlp-s", "cnn-s"]


@pytest.mark.parametrize("dataset, public, queries, models, augment", [
    ("mnist1d", 4000, 1000, "cnn-s,mlp-s", "none"), ("digits", 300, 300, "cnn-s,mlp-s", "none"),
    ("mnist-5k", 800, 800, "cnn-m,mlp-m", "crop"),
])
def test_every_data_set_runs_with_its_defaults_and_a_given_flag_wins(dataset, public, queries, models, augment):
    from fedkd.data.partition import partition_indices

    config = rules.load({"dataset": dataset})  # 100 clients, nothing else given
    assert (config.public_size, config.public_subset, config.models, config.augment) == (public, queries, models,
                                                                                         augment)
    assert config.server_model == models.split(",")[0]
    assert min(len(rows) for rows in partition_indices(config)) >= 1
    assert rules.load({"dataset": dataset, "public-subset": 100}).public_subset == 100
    with pytest.raises(ConfigError, match=f"public-subset=5000: must be <= public-size \\({public}\\)"):
        rules.load({"dataset": dataset, "public-subset": 5000})


def test_augmentation_defaults_to_the_data_sets_and_gives_way_to_dp_sgd_and_the_flag():
    assert rules.load({"dataset": "mnist-5k", "augment": "none"}).augment == "none"
    private = rules.load({"dataset": "mnist-5k", "dp": "dp-sgd", "dp-noise": 1.0})
    assert private.augment == "none"  # DP-SGD trains on the shard as it is
    with pytest.raises(ConfigError, match="dp-sgd trains on the shard as it is"):
        rules.load({"dataset": "mnist-5k", "dp": "dp-sgd", "dp-noise": 1.0, "augment": "crop"})
    with pytest.raises(ConfigError, match="augment"):
        rules.load({"dataset": "mnist-5k", "augment": "rotate"})
