"""The one typed run configuration: plain values, coercion and single-field checks.

Flower run-config keys are kebab-case scalars (``public-size``); the fields here
are their snake_case twins. ``pyproject.toml``'s ``[tool.flwr.app.config]`` holds
the same defaults (a test keeps the two equal), and every flag of
``simulations/run.py`` maps onto exactly one key. This module imports nothing of
fedkd: registries (``Registry``) and the cross-concern rules (``fedkd.rules``) build on it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
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
    dataset: str = _opt("mnist1d", "data set: mnist1d, digits, mnist-5k (built in), hf:<hub name> or "
                                   "path:<folder or file> (save_to_disk folder, parquet, csv, image folder)")
    input_column: str = _opt("", "input column of an hf: or path: data set (default: detected)")
    label_column: str = _opt("", "label column of an hf: or path: data set (default: detected)")
    public_dataset: str = _opt("", "draw the public proxy set from another data set (same forms as dataset; "
                                   "default: the run's data set)")
    public_labels: int = _opt(0, "1: every client first trains on the labelled public set, then on its shard "
                                 "(FedMD's transfer-learning step, in round 0)")
    partition: str = _opt("dirichlet", "private-pool partitioner: iid, dirichlet, pathological, natural "
                                       "(one client per value of partition-column)")
    partition_column: str = _opt("", "the column whose values name the clients (partition natural, e.g. a writer "
                                     "id)")
    alpha: float = _opt(0.5, "Dirichlet concentration (partition=dirichlet)")
    classes_per_client: int = _opt(2, "classes per client (partition=pathological)")
    public_size: int = _opt(0, "size of the public proxy set (0: every public row the data set has, e.g. 4,000 "
                               "for mnist1d)")
    public_subset: int = _opt(0, "public samples drawn afresh each round (the queries each client answers; "
                                 "under DP, the queries the budget pays for; 0: up to 1,000)")
    teacher_size: int = _opt(0, "public ids the server model's teacher signal covers (feddf-logits; 0: the round's "
                                "public-subset); post-processing of the server model, at no privacy cost")
    models: str = _opt("", "student architectures, round-robin (default: the data set's, e.g. cnn-s,mlp-s for "
                           "mnist1d and digits, cnn-m,mlp-m for mnist-5k, resnet8,cnn-m for colour images)")
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
    augment: str = _opt("", "augmentation of private image batches: none, crop (random 2-pixel shifts), "
                            "crop-flip (and horizontal flips); default: the data set's (crop for mnist-5k, none "
                            "for the others and under dp-sgd)")
    lr: float = _opt(3e-3, "Adam learning rate")
    server_model: str = _opt("", "architecture of the server model (feddf-logits, dsfl, online; default: the data "
                                 "set's first student)")
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
                           "client votes), confident-gnmax (PATE's votes answered only where the noisy top "
                           "count passes a noisy threshold, data-dependent accounting), dp-sgd (record-level: clients train on their shard with DP-SGD)")
    dp_noise: float = _opt(0.0, "σ: Gaussian noise of std σ per entry (dp-bound rows, gnmax) or σ·dp-clip "
                                "(matrix, local, dp-sgd); 0: calibrated to target-epsilon for the planned rounds")
    dp_bound: str = _opt("rows", "what bounds one client's upload under --dp central: rows (each public id's "
                                 "probabilities at the run's temperature; noise std dp-noise per entry) or matrix "
                                 "(the whole ids x classes logit matrix clipped to dp-clip)")
    dp_clip: float = _opt(10.0, "L2 bound C on one client's upload of a round (the whole ids x classes matrix; "
                                "dp-sgd: on one sample's gradient)")
    dp_threshold: float = _opt(0.6, "confident-gnmax: a public id is answered when its top vote count plus "
                                    "N(0, dp-threshold-noise²) reaches this share of the round's voters")
    dp_threshold_noise: float = _opt(0.0, "confident-gnmax: σ1 of the threshold check, in votes (needed > 0; "
                                          "Papernot et al. 2018 used 3 to 5 x dp-noise)")
    dp_delta: float = _opt(1e-5, "δ of the reported (ε, δ); below 1/clients")
    target_epsilon: float = _opt(math.inf, "privacy budget ε: with dp-noise the run stops before a round would "
                                           "exceed it; without, the noise is calibrated to it (inf: no budget)")
    eval_size: int = _opt(1000, "test rows of each per-round evaluation, a fixed seeded subset (0 or at least "
                                "the test set: all); round 0 and the last round evaluate on the whole test set")
    eval_every: int = _opt(1, "evaluate the students every k rounds (round 0 and the last always)")
    seed: int = _opt(0, "one seed for data, partitions, sampling and init")
    cohort_size: int = _opt(1, "clients one simulated node serves (one architecture per cohort); 1: a node per "
                               "client, as on real devices; 0: chosen for the clients and this machine's cores "
                               "(the simulation scripts' default)")
    device: str = _opt("auto", "where students and the server model compute: auto (CUDA if PyTorch sees a GPU), "
                               "cpu, cuda")
    threads: int = _opt(1, "PyTorch threads of each client and of the server's own training; fixed by the run "
                           "(not the machine's cores) because float sums, and so the metrics, depend on it")
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

    def client_run_config(self) -> dict[str, Any]:
        """``to_run_config`` as the server sends it to clients: without ``out``, where the
        server writes results, which no client reads and whose length would change every
        message's byte count."""
        return {k: v for k, v in self.to_run_config().items() if k != "out"}

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> RunConfig:
        """Build from kebab-case keys, coercing each value to its field's type and checking
        it on its own (``check_fields``); unknown keys are an error. A whole run is checked
        by ``fedkd.rules.load``."""
        known = {cls.key_of(f.name): f for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in run_config.items():
            if key not in known:
                raise ConfigError(key, value, f"unknown key; known keys: {', '.join(known)}")
            f = known[key]
            kwargs[f.name] = _coerce(key, value, type(f.default))
        config = cls(**kwargs)
        config.check_fields()
        return config

    def replace_unchecked(self, **changes: Any) -> RunConfig:
        """A changed copy whose fields are not checked (a hypothetical run, e.g. for accounting)."""
        return dataclasses.replace(self, **changes)

    def replace(self, **changes: Any) -> RunConfig:
        """A changed copy, its fields checked (``fedkd.rules.check`` checks the whole run)."""
        config = dataclasses.replace(self, **changes)
        config.check_fields()
        return config

    @property
    def model_names(self) -> list[str]:
        return [m.strip() for m in self.models.split(",") if m.strip()]

    def model_for(self, partition_id: int) -> str:
        """Round-robin assignment of architectures to partition ids."""
        names = self.model_names
        return names[partition_id % len(names)]

    # ------------------------------------------------------------ field checks
    def check_fields(self) -> None:
        """Each value on its own: its range, or that it is not empty. Rules that involve
        other fields or other parts of fedkd (names in registries, sizes of a data set,
        what a strategy can run) live in ``fedkd.rules``."""
        for key, (ok, allowed) in FIELD_RULES.items():
            value = getattr(self, key.replace("-", "_"))
            if not ok(value):
                raise ConfigError(key, value, allowed)

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


def _fraction(low_open: bool = False, high_open: bool = True, low: float = 0.0, high: float = 1.0):
    def ok(v: float) -> bool:
        return (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    return ok


_POSITIVE = (lambda v: v > 0, "must be > 0")
_AT_LEAST_0 = (lambda v: v >= 0, "must be >= 0")
_AT_LEAST_1 = (lambda v: v >= 1, "must be >= 1")
_FRACTION = (_fraction(), "a fraction in [0, 1)")

FIELD_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "clients": _AT_LEAST_1, "rounds": _AT_LEAST_1, "alpha": _POSITIVE, "classes-per-client": _AT_LEAST_1,
    "public-size": (lambda v: v >= 0, "must be >= 0 (0: the data set's default)"),
    "public-subset": (lambda v: v >= 0, "must be >= 0 (0: the data set's default)"),
    "public-labels": (lambda v: v in (0, 1), "0 (off) or 1 (on)"), "teacher-size": _AT_LEAST_0,
    "temperature": _POSITIVE, "kd-weight": (_fraction(high_open=False), "must be in [0, 1]"),
    "embed-dim": _AT_LEAST_1, "fraction": (_fraction(low_open=True, high_open=False), "must be in (0, 1]"),
    "init-epochs": _AT_LEAST_0, "distill-epochs": _AT_LEAST_0, "local-epochs": _AT_LEAST_0,
    "batch-size": _AT_LEAST_1, "lr": _POSITIVE, "server-epochs": _AT_LEAST_1, "era-temperature": _POSITIVE,
    "online": (lambda v: v in (0, 1), "0 (off) or 1 (on)"),
    "drop-rate": _FRACTION, "straggler-rate": _FRACTION, "crash-rate": _FRACTION, "byzantine-frac": _FRACTION,
    "round-timeout": (lambda v: v >= 0, "seconds >= 0 (0: wait for every reply)"),
    "min-clients": _AT_LEAST_1,
    "robust-frac": (_fraction(high=0.5), "a fraction in [0, 0.5): robust rules need an honest majority"),
    "dp-noise": (lambda v: v >= 0, "a noise multiplier >= 0 (0: calibrated to target-epsilon)"),
    "dp-clip": (lambda v: v > 0, "an L2 bound > 0"),
    "dp-threshold": (_fraction(low_open=True, high_open=False), "a share of the voters in (0, 1]"),
    "dp-threshold-noise": (lambda v: v >= 0, "a noise std in votes >= 0"),
    "dp-delta": (_fraction(low_open=True), "a probability in (0, 1)"),
    "target-epsilon": (lambda v: v > 0, "a budget ε > 0 (inf: no budget)"),
    "eval-size": (lambda v: v >= 0, "must be >= 0 (0: the whole test set)"), "eval-every": _AT_LEAST_1,
    "seed": _AT_LEAST_0, "threads": _AT_LEAST_1,
    "cohort-size": (lambda v: v >= 0, "must be >= 0 (0: chosen for the clients and cores; 1: a node per client)"), "out": (bool, "a folder path"),
}


class Registry(dict):
    """Names of one kind (data sets, models, strategies, ...) for the run-config ``key``
    that chooses among them; an unknown name raises ConfigError listing the known ones
    (as Opacus' accountant registry does), so every caller gets the same refusal."""

    def __init__(self, key: str, items: Mapping[str, Any] | Iterable[str]):
        super().__init__(items if isinstance(items, Mapping) else dict.fromkeys(items))
        self.key = key

    def __missing__(self, name: str) -> Any:
        raise ConfigError(self.key, name, f"allowed: {', '.join(self)}")
