"""The compute floor of a round: its client work as stacked bare PyTorch, one process per core.

No Flower, no Ray, no messages, no strategy: each process takes a share of the
clients, stacks its students by architecture (``fedkd.training.stacked``) and does,
per round after round 0, what a client of a public-set strategy does with the default
schedule: digest the teacher on the round's public ids (mixed with private picks by
``kd-weight``), predict the next round's query ids, and evaluate on the test rows
(``eval-size`` of them; all in the last round, as fedkd evaluates). Round 0's local
epochs are not part of the floor. What fedkd
adds on top of this (messages, aggregation, checkpoints, sampling, faults) is what
``simulations/bench.py`` measures as the ratio to it.
"""

from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from fedkd.config import RunConfig
from fedkd.data.datasets import load_splits
from fedkd.data.partition import partition_indices
from fedkd.knowledge.payload import query_ids
from fedkd.learning.models import build_model, derive_seed
from fedkd.training.compute import setup_process
from fedkd.training.loops import Schedule, each_scores
from fedkd.training.stacked import StackedStudents, digest_stacked, predict_stacked


def floor_rounds(config: RunConfig, workers: int) -> list[float]:
    """Seconds of each round 1..rounds, every worker's share done in parallel."""
    by_model: dict[str, list[int]] = {}
    for pid in range(config.clients):
        by_model.setdefault(config.model_for(pid), []).append(pid)
    shares = [sorted(p for pids in by_model.values() for p in pids[w::workers]) for w in range(workers)]  # balanced
    with mp.get_context("spawn").Pool(workers) as pool:
        times = pool.starmap(_work, [(config, share) for share in shares if share])
    return [max(column) for column in zip(*times)]


def round_gflop(config: RunConfig) -> float:
    """About how much arithmetic (GFLOP) one round of the floor does: per sampled
    student, the digest's forward and backward passes (counted as three forward passes)
    on its batches (public ids, with as many private picks where ``kd-weight`` < 1) and
    one forward pass per answer and per evaluation row (a round's ``eval-size``; the last
    round evaluates on all the test rows); a row's forward pass is counted
    by PyTorch's FLOP counter (multiply-adds of the convolutions and linear layers)."""
    splits = load_splits(config)
    test_rows = len(splits.test_rows(config.eval_size, config.seed)[1])
    queries = config.public_subset
    digest_rows = config.distill_epochs * queries * (2 if config.kd_weight < 1 else 1)
    per_row = {}
    for name in config.model_names:
        with FlopCounterMode(display=False) as counter:
            build_model(name, splits.input_shape, splits.num_classes, 0)(torch.from_numpy(splits.public_x[:1]))
        per_row[name] = counter.get_total_flops()
    share = config.clients_per_round / config.clients
    return share * sum(per_row[config.model_for(p)] * (3 * digest_rows + queries + test_rows)
                       for p in range(config.clients)) / 1e9


def _work(config: RunConfig, partitions: list[int]) -> list[float]:
    setup_process(config.threads)
    splits = load_splits(config)
    rows = partition_indices(config)
    groups: dict[str, list[int]] = {}
    for pid in partitions:
        groups.setdefault(config.model_for(pid), []).append(pid)
    students = {name: StackedStudents([build_model(name, splits.input_shape, splits.num_classes,
                                                   derive_seed(config.seed, pid)) for pid in pids])
                for name, pids in groups.items()}
    private = {pid: (torch.from_numpy(splits.private_x[rows[pid]]), torch.from_numpy(splits.private_y[rows[pid]]))
               for pid in partitions}
    evaluation = {size: tuple(torch.from_numpy(a) for a in splits.test_rows(size, config.seed))
                  for size in (config.eval_size, 0)}  # per-round rows; the last round: all, as fedkd's
    schedule = Schedule(config.distill_epochs, 0, config.temperature, config.kd_weight, config.batch_size,
                        config.lr, config.soft_loss)
    teacher_rng = np.random.default_rng(config.seed)
    times = []
    for rnd in range(1, config.rounds + 1):
        ids = query_ids(config, rnd - 1)
        teacher = torch.from_numpy(teacher_rng.normal(size=(len(ids), splits.num_classes)).astype(np.float32))
        start = time.perf_counter()
        for name, pids in groups.items():
            digest_stacked(students[name], torch.from_numpy(splits.public_x[ids]), teacher,
                           [private[p] for p in pids], schedule,
                           [torch.Generator().manual_seed(derive_seed(config.seed, p, rnd)) for p in pids])
            predict_stacked(students[name], torch.from_numpy(splits.public_x[query_ids(config, rnd)]))
            test_x, test_y = evaluation[0 if rnd == config.rounds else config.eval_size]
            each_scores(predict_stacked(students[name], test_x), test_y)
        times.append(time.perf_counter() - start)
    return times
