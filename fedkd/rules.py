"""Every rule about a whole run configuration, in one place, for every entry point.

``fedkd.config`` checks each value on its own; the registries refuse unknown names
themselves (``fedkd.config.Registry``). What is left lives here: rules between fields
(sizes the data set must serve, fault rates that leave someone to reply, a privacy
budget that round 0 does not exceed) and what a strategy can run with the chosen
knowledge, privacy mechanism, compression, aggregator and attacks, decided from what
each strategy declares (its class attributes), never from lists of names.

``load`` is what the scripts, the ServerApp under ``flwr run``, the ClientApp and
``--resume`` call, so a configuration is refused the same way, naming the key, the
value and what is allowed, wherever it enters and before any long work.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from fedkd.config import ConfigError, RunConfig
from fedkd.data.datasets import (
    DATASETS,
    MIN_PRIVATE_PER_CLIENT,
    data_defaults,
    dataset_spec,
    load_splits,
    public_spec,
)
from fedkd.data.external import is_external
from fedkd.data.partition import PARTITIONERS, partition_indices
from fedkd.faults.byzantine import ATTACKS
from fedkd.faults.robust import AGGREGATORS
from fedkd.knowledge.compression import SCHEMES
from fedkd.knowledge.kinds import KINDS
from fedkd.learning.augment import AUGMENTS
from fedkd.learning.device import torch_device
from fedkd.learning.losses import SOFT_LOSSES
from fedkd.learning.models import MODELS
from fedkd.privacy.mechanisms import BOUNDS, MECHANISMS
from fedkd.protocol import CLASS_LOGITS, PUBLIC_LOGITS, WEIGHTS
from fedkd.strategies import STRATEGIES, FedkdStrategy

UPLOADS = {CLASS_LOGITS: "per-class means of its own shard (their classes and the own-upload exclusion reveal "
                         "the shard)",
           WEIGHTS: "weights (local DP of weights is not wired in)"}  # by reply, for refusals


def load(run_config: Mapping[str, Any]) -> RunConfig:
    """The run configuration of kebab-case ``run_config``, every rule checked, with the
    data set's defaults in the values it leaves to the data set."""
    return complete(RunConfig.from_run_config(run_config))


@lru_cache(maxsize=16)
def complete(config: RunConfig) -> RunConfig:
    """``config`` checked, what it leaves to the data set (0 or "") filled in (cached, as
    ``check``: every message a client gets carries the run config)."""
    config.check_fields()
    _names(config)
    filled = config.replace_unchecked(**data_defaults(config, MECHANISMS[config.dp].private_training),
                                      cohort_size=config.cohort_size or auto_cohort_size(config.clients))
    check(filled)
    return filled


COHORT_MAX = 25  # clients per simulated node at most, by default (README, "Cohorts": measured)


def auto_cohort_size(clients: int, cores: int | None = None) -> int:
    """Cohorts that leave two nodes per core (one Ray actor a core) to balance the load,
    of at most ``COHORT_MAX`` clients."""
    cores = cores or os.cpu_count() or 1
    return max(1, min(COHORT_MAX, clients // (2 * cores)))


@lru_cache(maxsize=16)
def check(config: RunConfig) -> None:
    """Raise ConfigError for the first rule ``config`` breaks (cached: clients check
    the configuration of every message they get)."""
    config.check_fields()
    _names(config)
    for key in ("public-size", "public-subset", "models", "server-model", "cohort-size", "augment"):
        if not getattr(config, key.replace("-", "_")):
            raise ConfigError(key, getattr(config, key.replace("-", "_")), "the data set's default is filled in "
                              "by rules.complete; check a completed configuration")
    _data(config)
    _sizes(config)
    _faults(config)
    _privacy(config)
    strategy = STRATEGIES[config.strategy]
    _knowledge(strategy, config)
    _uploads(strategy, config)
    _mechanism(strategy, config)
    _architectures(strategy, config)


def changed(config: RunConfig, **changes: Any) -> RunConfig:
    """A copy of ``config`` with ``changes`` (snake_case fields), completed and every rule checked."""
    return complete(config.replace_unchecked(**changes))


def check_shards(config: RunConfig, sizes: Sequence[int] | None = None) -> None:
    """Rules that need the clients' shard sizes: ``sizes`` (a device's own shard), or
    the simulated partitions'."""
    if not MECHANISMS[config.dp].private_training:
        return
    sizes = sizes if sizes is not None else [len(rows) for rows in partition_indices(config)]
    if config.dp_delta >= 1 / min(sizes):
        raise ConfigError("dp-delta", config.dp_delta, f"dp-sgd protects one sample of a shard, and the smallest "
                          f"shard has {min(sizes)}; δ must be below 1/{min(sizes)}")


# ------------------------------------------------------------- the rules
def _names(config: RunConfig) -> None:
    for registry, name in ((STRATEGIES, config.strategy), (PARTITIONERS, config.partition), (SOFT_LOSSES, config.soft_loss),
                           (KINDS, config.knowledge), (SCHEMES, config.compression), (ATTACKS, config.attack),
                           (AGGREGATORS, config.aggregator), (MECHANISMS, config.dp), (BOUNDS, config.dp_bound)):
        registry[name]  # noqa: B018 - a Registry raises ConfigError on an unknown name
    if config.augment:
        AUGMENTS[config.augment]  # noqa: B018 - "" leaves it to the data set
    _data_names(config)
    torch_device(config.device)  # an unknown name, or cuda without a GPU
    if config.models and not config.model_names:
        raise ConfigError("models", config.models, f"a comma-separated list of: {', '.join(MODELS)}")
    for name in config.model_names:
        if name not in MODELS:
            raise ConfigError("models", config.models, f"unknown model {name!r}; allowed: {', '.join(MODELS)}")
    if config.server_model and config.server_model not in MODELS:
        raise ConfigError("server-model", config.server_model, f"allowed: {', '.join(MODELS)}")


def _data_names(config: RunConfig) -> None:
    """Data-set names and the flags that only some data sets take (nothing is loaded)."""
    for key in ("dataset", "public-dataset"):
        name = getattr(config, key.replace("-", "_"))
        if name and not is_external(name) and name not in DATASETS:
            raise ConfigError(key, name, f"allowed: {', '.join(DATASETS)}, hf:<hub name> or path:<folder or file>")
    for key in ("input-column", "label-column"):
        value = getattr(config, key.replace("-", "_"))
        if value and not is_external(config.dataset):
            raise ConfigError(key, value, f"names a column of an hf: or path: data set; {config.dataset} is built in")
    if (config.partition == "natural") != bool(config.partition_column):
        raise ConfigError("partition-column", config.partition_column, "--partition natural needs the column "
                          "whose values name the clients (--partition-column), and only it uses one")
    if config.partition == "natural" and not is_external(config.dataset):
        raise ConfigError("partition", "natural", f"{config.dataset} has no natural ids; use an hf: or path: data "
                          "set with a column such as a writer id")


def _data(config: RunConfig) -> None:
    """The data set loads, its columns exist, and the public set fits the private one."""
    spec, public = dataset_spec(config), public_spec(config)
    if public.input_shape != spec.input_shape:
        raise ConfigError("public-dataset", config.public_dataset, f"its inputs have shape {public.input_shape}, "
                          f"{config.dataset}'s {spec.input_shape}; the students read both")
    if config.public_labels and public.num_classes != spec.num_classes:
        raise ConfigError("public-labels", config.public_labels, f"the public set's labels are {public.num_classes} "
                          f"classes, {config.dataset}'s {spec.num_classes}: the students cannot train on them")
    if config.augment != "none" and len(spec.input_shape) != 3:
        raise ConfigError("augment", config.augment, f"shifts and flips images (channels x height x width); "
                          f"{config.dataset}'s inputs have shape {spec.input_shape}")
    if config.augment != "none" and MECHANISMS[config.dp].private_training:
        raise ConfigError("augment", config.augment, "dp-sgd trains on the shard as it is; run it with --augment none")
    if config.partition == "natural":
        ids = len(set(load_splits(config).private_groups.tolist()))
        if config.clients > ids:
            raise ConfigError("clients", config.clients, f"the private pool has {ids} values of "
                              f"{config.partition_column}, one client each; use 1..{ids}")


def _sizes(config: RunConfig) -> None:
    """What the data set can serve: its public pool (whose tail is the server's
    validation split) and its private pool."""
    spec, public = dataset_spec(config), public_spec(config)
    if config.public_size > public.public_max:
        source = config.public_dataset or config.dataset
        raise ConfigError("public-size", config.public_size,
                          f"{source} has {public.public_max} public samples; use 1..{public.public_max}")
    for key in ("public-subset", "teacher-size"):
        value = getattr(config, key.replace("-", "_"))
        if value > config.public_size:
            raise ConfigError(key, value, f"must be <= public-size ({config.public_size})")
    most = spec.private // MIN_PRIVATE_PER_CLIENT
    if config.clients > most:
        raise ConfigError("clients", config.clients,
                          f"{config.dataset}'s private pool ({spec.private} samples) allows at most {most} "
                          f"clients of >= {MIN_PRIVATE_PER_CLIENT} samples")
    classes = spec.num_classes
    if config.compression == "top-k" and not 1 <= config.top_k < classes:
        raise ConfigError("top-k", config.top_k, f"between 1 and {classes - 1} ({config.dataset} has {classes} "
                          "classes; keeping all is compression=fp16 or none)")


def _faults(config: RunConfig) -> None:
    rates = config.drop_rate + config.straggler_rate + config.crash_rate
    if rates >= 1:
        raise ConfigError("drop-rate", config.drop_rate, "drop-rate + straggler-rate + crash-rate must be < 1 "
                          f"(now {rates:g}): some client has to reply")
    for key in ("drop-rate", "straggler-rate"):
        value = getattr(config, key.replace("-", "_"))
        if value > 0 and config.round_timeout == 0:
            raise ConfigError(key, value, "needs --round-timeout > 0: without a deadline the server waits for "
                              "replies that never come")
    sampled = config.clients_per_round
    if config.min_clients > sampled:
        raise ConfigError("min-clients", config.min_clients,
                          f"between 1 and the clients sampled per round ({sampled})")


def _privacy(config: RunConfig) -> None:
    if not config.dp_delta < 1 / config.clients:
        raise ConfigError("dp-delta", config.dp_delta, f"must be below 1/clients = {1 / config.clients:g}: the "
                          "unit is one client, and δ >= 1/n allows releasing one client's data outright")
    mechanism = MECHANISMS[config.dp]
    if not mechanism.accounting and (config.dp_noise > 0 or math.isfinite(config.target_epsilon)):
        raise ConfigError("dp", config.dp, "--dp-noise and --target-epsilon need a mechanism: "
                          f"--dp {' or --dp '.join(m for m in MECHANISMS if m != 'none')}")
    if mechanism.accounting == "data-dependent":
        if config.dp_noise == 0:
            raise ConfigError("dp-noise", config.dp_noise, f"--dp {config.dp} needs σ > 0 (in votes): its cost "
                              "depends on the votes, so no noise is calibrated before the run; --target-epsilon "
                              "is the budget at which it stops answering")
        if config.dp_threshold_noise == 0:
            raise ConfigError("dp-threshold-noise", config.dp_threshold_noise, f"--dp {config.dp} needs σ1 > 0 "
                              "(in votes) for its threshold check")
        return
    if mechanism.accounting and config.dp_noise == 0 and math.isinf(config.target_epsilon):
        raise ConfigError("dp", config.dp, "needs --dp-noise > 0 or a finite --target-epsilon to calibrate it")
    if mechanism.private_training and config.dp_noise > 0 and math.isfinite(config.target_epsilon):
        raise ConfigError("target-epsilon", config.target_epsilon, "with dp-sgd give --dp-noise or "
                          "--target-epsilon (each client calibrates its noise for its shard), not both")
    if mechanism.noised_uploads and config.dp_noise > 0 and math.isfinite(config.target_epsilon):
        from fedkd.privacy.accounting import planned_epsilon  # dp-accounting: a second to import, where needed

        first = planned_epsilon(config.replace_unchecked(rounds=0), config.dp_noise)
        if first > config.target_epsilon:
            raise ConfigError("target-epsilon", config.target_epsilon, f"round 0 alone spends ε = {first:.3g} "
                              f"with dp-noise={config.dp_noise:g}; raise one of them (or leave dp-noise at 0 "
                              "to calibrate it)")


# --------------------------------------- what each strategy declares it runs
def _which(accepts: Callable[[type[FedkdStrategy]], bool]) -> str:
    """The strategies that accept something, named for an error message."""
    names = [name for name, strategy in STRATEGIES.items() if accepts(strategy)]
    if not names:
        return "no strategy"
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _uploads_soft_labels(strategy: type[FedkdStrategy], knowledge: str) -> bool:
    """Whether clients upload soft labels (on public ids or per class) under ``strategy``."""
    return strategy.reply in (PUBLIC_LOGITS, CLASS_LOGITS) and knowledge == "soft-labels"


def _knowledge(strategy: type[FedkdStrategy], config: RunConfig) -> None:
    k = config.knowledge
    if strategy.kinds is not None and k not in strategy.kinds:
        raise ConfigError("knowledge", k, f"--strategy={strategy.name} carries {', '.join(strategy.kinds)}; "
                          f"{k} knowledge runs with {_which(lambda s: s.kinds is not None and k in s.kinds)}")
    if config.online and k != "soft-labels":
        raise ConfigError("online", config.online, f"the server model learns from soft labels; --knowledge={k} "
                          "cannot teach it")
    if config.online and not strategy.public_teacher:
        raise ConfigError("online", config.online, f"--strategy={strategy.name} has no public-set teacher signal "
                          "for a server model to join; online distillation runs with "
                          f"{_which(lambda s: s.public_teacher)}")
    if config.teacher_size and not strategy.server_model_teacher:
        raise ConfigError("teacher-size", config.teacher_size, f"--strategy={strategy.name} sends no server-model "
                          f"teacher; a teacher of its own size runs with {_which(lambda s: s.server_model_teacher)}")
    if config.aggregator != "mean" and not strategy.public_teacher:
        raise ConfigError("aggregator", config.aggregator, f"--strategy={strategy.name} has no knowledge on public "
                          f"ids to combine robustly; robust aggregators run with {_which(lambda s: s.public_teacher)}")


def _uploads(strategy: type[FedkdStrategy], config: RunConfig) -> None:
    """Compression and Byzantine attacks act on uploaded soft labels."""
    for key, value, what in (("compression", config.compression != "none", "compresses"),
                             ("byzantine-frac", config.byzantine_frac > 0, "attacks corrupt")):
        if value and not _uploads_soft_labels(strategy, config.knowledge):
            raise ConfigError(key, getattr(config, key.replace("-", "_")),
                              f"{what} uploaded soft labels; --strategy={strategy.name} with "
                              f"--knowledge={config.knowledge} uploads none (use "
                              f"{_which(lambda s: _uploads_soft_labels(s, 'soft-labels'))} with soft-labels)")


def _mechanism(strategy: type[FedkdStrategy], config: RunConfig) -> None:
    """Refuse a DP mechanism whose claimed unit would not hold for this strategy."""
    dp = config.dp
    mechanism = MECHANISMS[dp]
    if mechanism.accounting and strategy.pools_private_data:
        raise ConfigError("dp", dp, f"--strategy={strategy.name} trains on the pooled shards with no DP; run it "
                          "without --dp as the non-private reference")
    if mechanism.private_training and strategy.reply == CLASS_LOGITS:
        raise ConfigError("dp", dp, f"protects training steps; --strategy={strategy.name} uploads per-class means "
                          "computed from the shard itself, outside any DP-SGD step")
    if not mechanism.noised_uploads or (dp == "central" and strategy.dp_fedavg):
        return
    if not (strategy.reply == PUBLIC_LOGITS and config.knowledge == "soft-labels"):
        uploads = (f"--knowledge={config.knowledge}" if config.knowledge != "soft-labels"
                   else UPLOADS.get(strategy.reply, "nothing"))
        fedavg = _which(lambda s: s.dp_fedavg)
        raise ConfigError("dp", dp, f"clips and noises soft labels on public ids, one bounded matrix per client and "
                          f"round; --strategy={strategy.name} uploads {uploads}; use "
                          f"{_which(lambda s: s.reply == PUBLIC_LOGITS and 'soft-labels' in (s.kinds or ()))} "
                          f"with soft-labels (with --dp central, {fedavg} is DP-FedAvg)")
    for key, value, fine in (("aggregator", config.aggregator, "mean"),
                             ("compression", config.compression, "none"),
                             ("byzantine-frac", config.byzantine_frac, 0.0)):
        if value != fine:
            raise ConfigError(key, value, f"--dp={dp} accounts for the noised mean of clipped, unmodified "
                              f"uploads; run it with --{key}={fine}")


def _architectures(strategy: type[FedkdStrategy], config: RunConfig) -> None:
    if strategy.one_architecture and len(config.model_names) > 1:
        raise ConfigError("models", config.models, f"--strategy={strategy.name} averages parameters, so every "
                          "client needs the same architecture; pass one model (e.g. --models "
                          f"{config.model_names[0]}), or use a distillation strategy "
                          f"({_which(lambda s: s.kinds is not None and not s.one_architecture)}), which mixes "
                          "architectures")
