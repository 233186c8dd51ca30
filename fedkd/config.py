"""The one typed, validated run configuration.

Flower run-config keys are kebab-case scalars (``public-size``); the fields here
are their snake_case twins. ``pyproject.toml``'s ``[tool.flwr.app.config]`` holds
the same defaults (a test keeps the two equal), and every flag of
``simulations/run.py`` maps onto exactly one key.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """An invalid run-config value: names the key, the value and what is allowed."""

    def __init__(self, key: str, value: Any, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"invalid {key}={value!r}: {allowed}")


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; the server forwards the client-side part in messages."""

    clients: int = _opt(100, "number of clients (= data partitions)")
    rounds: int = _opt(10, "communication rounds after the local-only round 0")
    strategy: str = _opt("fedmd", "server strategy: fedmd, feddf, feddf-logits, dsfl, feddistill, fedavg, "
                                  "local, centralized")
    dataset: str = _opt("mnist1d", "data set name")
    partition: str = _opt("dirichlet", "private-pool partitioner")
    alpha: float = _opt(0.5, "Dirichlet concentration (partition=dirichlet)")
    classes_per_client: int = _opt(2, "classes per client (partition=pathological)")
    public_size: int = _opt(4000, "size of the public proxy set")
    public_subset: int = _opt(1000, "public samples drawn afresh each round")
    models: str = _opt("cnn-s,mlp-s", "student architectures, round-robin")
    temperature: float = _opt(2.0, "distillation temperature T")
    kd_weight: float = _opt(0.5, "weight of the soft loss against the hard loss")
    soft_loss: str = _opt("kl", "soft loss: kl (T²-scaled KL) or l1 (on logits, FedMD's digest)")
    knowledge: str = _opt("soft-labels", "knowledge kind: soft-labels, relational, contrastive, prototypes")
    embed_dim: int = _opt(32, "shared embedding width (contrastive and prototypes knowledge)")
    fraction: float = _opt(1.0, "fraction of clients sampled each round")
    init_epochs: int = _opt(10, "private epochs in round 0 (local-only)")
    distill_epochs: int = _opt(1, "epochs over the teacher signal per round")
    local_epochs: int = _opt(0, "private epochs per round (at least 1 for local, fedavg, feddf, "
                                "feddistill and centralized, whose clients learn only from their shard)")
    batch_size: int = _opt(64, "mini-batch size")
    lr: float = _opt(3e-3, "Adam learning rate")
    server_model: str = _opt("cnn-s", "architecture of the server model (feddf-logits, dsfl, online)")
    server_epochs: int = _opt(10, "most epochs of server-side distillation (early stopping on validation)")
    era_temperature: float = _opt(0.1, "entropy-reduction temperature of DS-FL's aggregation")
    online: int = _opt(0, "1: online distillation, a server model learns in every round and its "
                          "predictions join the teacher signal (public-set strategies)")
    compression: str = _opt("none", "uploaded soft labels: none (float32), fp16, int8, top-k")
    top_k: int = _opt(3, "logits kept per row with compression=top-k (the rest: their mean)")
    drop_rate: float = _opt(0.0, "fault injection: fraction of sampled clients that never reply (rounds >= 1)")
    straggler_rate: float = _opt(0.0, "fault injection: fraction of sampled clients whose reply arrives after "
                                      "the round timeout")
    crash_rate: float = _opt(0.0, "fault injection: fraction of sampled clients whose ClientApp raises")
    round_timeout: float = _opt(0.0, "seconds the server waits for replies before it closes a round "
                                     "(0: wait for every reply)")
    min_clients: int = _opt(1, "accepted replies a round needs; with fewer its aggregation is skipped")
    byzantine_frac: float = _opt(0.0, "fraction of clients that are Byzantine and corrupt every upload")
    attack: str = _opt("random", "what Byzantine clients upload: random, label-flip, scale, invert, one-class")
    aggregator: str = _opt("mean", "how the server combines knowledge: mean (the strategy's own rule), "
                                   "median, trimmed-mean, krum")
    robust_frac: float = _opt(0.2, "fraction of replies a robust aggregator assumes malicious")
    dp: str = _opt("none", "differential privacy: none, central (the server clips and noises the aggregate "
                           "of uploads), local (each client noises its upload), gnmax (PATE: noisy argmax of "
                           "client votes), dp-sgd (record-level: clients train on their shard with DP-SGD)")
    dp_noise: float = _opt(0.0, "noise multiplier σ: Gaussian noise of std σ·dp-clip (gnmax: σ votes; 0: "
                                "calibrated to target-epsilon for the planned rounds)")
    dp_clip: float = _opt(10.0, "L2 bound C on one client's upload of a round (the whole ids x classes matrix; "
                                "dp-sgd: on one sample's gradient)")
    dp_delta: float = _opt(1e-5, "δ of the reported (ε, δ); below 1/clients")
    target_epsilon: float = _opt(math.inf, "privacy budget ε: with dp-noise the run stops before a round would "
                                           "exceed it; without, the noise is calibrated to it (inf: no budget)")
    seed: int = _opt(0, "one seed for data, partitions, sampling and init")
    out: str = _opt("results", "folder that receives results/<run-id>/")

    # ----------------------------------------------------------------- keys
    @staticmethod
    def key_of(name: str) -> str:
        return name.replace("_", "-")

    @classmethod
    def keys(cls) -> list[str]:
        return [cls.key_of(f.name) for f in dataclasses.fields(cls)]

    @classmethod
    def help_of(cls, key: str) -> str:
        by_key = {cls.key_of(f.name): f for f in dataclasses.fields(cls)}
        return by_key[key].metadata["help"]

    def to_run_config(self) -> dict[str, Any]:
        """Kebab-case scalars, as Flower's run config and ConfigRecord carry them."""
        return {self.key_of(k): v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> RunConfig:
        """Build and validate from kebab-case keys; unknown keys are an error."""
        known = {cls.key_of(f.name): f for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in run_config.items():
            if key not in known:
                raise ConfigError(key, value, f"unknown key; known keys: {', '.join(known)}")
            f = known[key]
            kwargs[f.name] = _coerce(key, value, type(f.default))
        config = cls(**kwargs)
        config.validate()
        return config

    def replace_unchecked(self, **changes: Any) -> RunConfig:
        """A changed copy that is not validated (a hypothetical run, e.g. for accounting)."""
        return dataclasses.replace(self, **changes)

    def replace(self, **changes: Any) -> RunConfig:
        config = dataclasses.replace(self, **changes)
        config.validate()
        return config

    @property
    def model_names(self) -> list[str]:
        return [m.strip() for m in self.models.split(",") if m.strip()]

    def model_for(self, partition_id: int) -> str:
        """Round-robin assignment of architectures to partition ids."""
        names = self.model_names
        return names[partition_id % len(names)]

    # ------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check every value that can be checked without loading data."""
        # Imported here: the registries import this module's ConfigError.
        from fedkd.datasets import DATASETS
        from fedkd.knowledge_kinds import KINDS
        from fedkd.losses import SOFT_LOSSES
        from fedkd.models import MODELS
        from fedkd.partition import PARTITIONERS
        from fedkd.strategies import STRATEGIES

        _choice("strategy", self.strategy, STRATEGIES)
        _choice("dataset", self.dataset, DATASETS)
        _choice("partition", self.partition, PARTITIONERS)
        if not self.model_names:
            raise ConfigError("models", self.models, f"a comma-separated list of: {', '.join(MODELS)}")
        for name in self.model_names:
            if name not in MODELS:
                raise ConfigError("models", self.models, f"unknown model {name!r}; allowed: {', '.join(MODELS)}")
        _at_least("clients", self.clients, 1)
        _at_least("rounds", self.rounds, 1)
        if not self.alpha > 0:
            raise ConfigError("alpha", self.alpha, "must be > 0")
        _at_least("classes-per-client", self.classes_per_client, 1)
        _at_least("public-size", self.public_size, 1)
        _at_least("public-subset", self.public_subset, 1)
        if self.public_subset > self.public_size:
            raise ConfigError("public-subset", self.public_subset,
                              f"must be <= public-size ({self.public_size})")
        if not self.temperature > 0:
            raise ConfigError("temperature", self.temperature, "must be > 0")
        if not 0 <= self.kd_weight <= 1:
            raise ConfigError("kd-weight", self.kd_weight, "must be in [0, 1]")
        if not 0 < self.fraction <= 1:
            raise ConfigError("fraction", self.fraction, "must be in (0, 1]")
        _at_least("init-epochs", self.init_epochs, 0)
        _at_least("distill-epochs", self.distill_epochs, 0)
        _at_least("local-epochs", self.local_epochs, 0)
        _at_least("batch-size", self.batch_size, 1)
        if not self.lr > 0:
            raise ConfigError("lr", self.lr, "must be > 0")
        _choice("soft-loss", self.soft_loss, SOFT_LOSSES)
        _choice("knowledge", self.knowledge, KINDS)
        _at_least("embed-dim", self.embed_dim, 1)
        _choice("server-model", self.server_model, MODELS)
        _at_least("server-epochs", self.server_epochs, 1)
        if not self.era_temperature > 0:
            raise ConfigError("era-temperature", self.era_temperature, "must be > 0")
        self._validate_compression()
        self._validate_faults()
        self._validate_privacy()
        _at_least("seed", self.seed, 0)
        if not self.out:
            raise ConfigError("out", self.out, "a folder path")
        if self.online not in (0, 1):
            raise ConfigError("online", self.online, "0 (off) or 1 (on)")
        STRATEGIES[self.strategy].check(self)

    def _validate_compression(self) -> None:
        from fedkd.compression import SCHEMES
        from fedkd.datasets import DATASETS

        _choice("compression", self.compression, dict.fromkeys(SCHEMES))
        classes = DATASETS[self.dataset].num_classes
        if self.compression == "top-k" and not 1 <= self.top_k < classes:
            raise ConfigError("top-k", self.top_k, f"between 1 and {classes - 1} ({self.dataset} has {classes} "
                              "classes; keeping all is compression=fp16 or none)")

    def _validate_faults(self) -> None:
        from fedkd.attacks import ATTACKS
        from fedkd.robust import AGGREGATORS

        for key in ("drop-rate", "straggler-rate", "crash-rate", "byzantine-frac"):
            value = getattr(self, key.replace("-", "_"))
            if not 0 <= value < 1:
                raise ConfigError(key, value, "a fraction in [0, 1)")
        if self.drop_rate + self.straggler_rate + self.crash_rate >= 1:
            raise ConfigError("drop-rate", self.drop_rate, "drop-rate + straggler-rate + crash-rate must be < 1 "
                              f"(now {self.drop_rate + self.straggler_rate + self.crash_rate:g}): some client "
                              "has to reply")
        if not self.round_timeout >= 0:
            raise ConfigError("round-timeout", self.round_timeout, "seconds >= 0 (0: wait for every reply)")
        for key in ("drop-rate", "straggler-rate"):
            if getattr(self, key.replace("-", "_")) > 0 and self.round_timeout == 0:
                raise ConfigError(key, getattr(self, key.replace("-", "_")),
                                  "needs --round-timeout > 0: without a deadline the server waits for "
                                  "replies that never come")
        sampled = self.clients_per_round
        if not 1 <= self.min_clients <= sampled:
            raise ConfigError("min-clients", self.min_clients,
                              f"between 1 and the clients sampled per round ({sampled})")
        _choice("attack", self.attack, ATTACKS)
        _choice("aggregator", self.aggregator, AGGREGATORS)
        if not 0 <= self.robust_frac < 0.5:
            raise ConfigError("robust-frac", self.robust_frac, "a fraction in [0, 0.5): robust rules need an "
                              "honest majority")

    def _validate_privacy(self) -> None:
        from fedkd.privacy import MECHANISMS, planned_epsilon

        _choice("dp", self.dp, dict.fromkeys(MECHANISMS))
        if not self.dp_noise >= 0:
            raise ConfigError("dp-noise", self.dp_noise, "a noise multiplier >= 0 (0: calibrated to target-epsilon)")
        if not self.dp_clip > 0:
            raise ConfigError("dp-clip", self.dp_clip, "an L2 bound > 0")
        if not 0 < self.dp_delta < 1:
            raise ConfigError("dp-delta", self.dp_delta, "a probability in (0, 1)")
        if not self.dp_delta < 1 / self.clients:
            raise ConfigError("dp-delta", self.dp_delta, f"must be below 1/clients = {1 / self.clients:g}: the "
                              "unit is one client, and δ >= 1/n allows releasing one client's data outright")
        if not self.target_epsilon > 0:
            raise ConfigError("target-epsilon", self.target_epsilon, "a budget ε > 0 (inf: no budget)")
        if self.dp != "none" and self.dp_noise == 0 and math.isinf(self.target_epsilon):
            raise ConfigError("dp", self.dp, "needs --dp-noise > 0 or a finite --target-epsilon to calibrate it")
        if self.dp == "dp-sgd" and self.dp_noise > 0 and math.isfinite(self.target_epsilon):
            raise ConfigError("target-epsilon", self.target_epsilon, "with dp-sgd give --dp-noise or "
                              "--target-epsilon (each client calibrates its noise for its shard), not both")
        if self.dp not in ("none", "dp-sgd") and self.dp_noise > 0 and math.isfinite(self.target_epsilon):
            first = planned_epsilon(self.replace_unchecked(rounds=0), self.dp_noise)
            if first > self.target_epsilon:
                raise ConfigError("target-epsilon", self.target_epsilon, f"round 0 alone spends ε = {first:.3g} "
                                  f"with dp-noise={self.dp_noise:g}; raise one of them (or leave dp-noise at 0 "
                                  "to calibrate it)")
        if self.dp == "none" and (self.dp_noise > 0 or math.isfinite(self.target_epsilon)):
            raise ConfigError("dp", self.dp, "--dp-noise and --target-epsilon need a mechanism: --dp central "
                              "or --dp local")

    @property
    def clients_per_round(self) -> int:
        """Clients sampled in each round after round 0."""
        return max(1, round(self.fraction * self.clients))


def _coerce(key: str, value: Any, kind: type) -> Any:
    if kind is bool or isinstance(value, bool):
        raise ConfigError(key, value, f"expected {kind.__name__}")
    try:
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind is float:
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(key, value, f"expected {kind.__name__}") from None


def _choice(key: str, value: str, allowed: Mapping[str, Any]) -> None:
    if value not in allowed:
        raise ConfigError(key, value, f"allowed: {', '.join(allowed)}")


def _at_least(key: str, value: int, low: int) -> None:
    if value < low:
        raise ConfigError(key, value, f"must be >= {low}")
