"""Many students of one architecture trained at once: stacked weights, ``torch.func.vmap``.

The per-client loops of ``fedkd.training.loops`` spend most of a small student's
time in Python and kernel launches; stacking K students' weights and mapping one
step over them (``torch.func.functional_call`` inside ``vmap(grad(...))``) does the
same arithmetic in K-wide kernels. Students that ``fedkd.learning.grouped`` runs
(``cnn-*``, ``mlp-*``) skip ``vmap``: their K weight sets train as one grouped
convolution per layer on channels-last maps, with ordinary autograd over the sum of the
students' losses, which gives each student its own gradient; other students (ResNets)
are vmapped. What stays per client is exactly what the loops
do per client: each student's own generator draws its batch order and private picks
in the same order ``digest`` draws them, and each has its own Adam moments (the
update below is ``torch.optim.Adam``'s, defaults and all). Stacked here: the digest
(every client fits the same public ids, in its own order), the private epochs (each
client on its own shard, each with its own number of steps: a per-student step count,
padding only in an epoch's short last batch) and predictions on shared rows. Floats
differ from the per-client loops only in the order the batched kernels sum in
(``tests/test_stacked.py`` states the tolerance).
"""

from __future__ import annotations

import copy
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap

from fedkd.learning.grouped import groupable, grouped_logits, one_student
from fedkd.learning.losses import SOFT_LOSSES
from fedkd.training.loops import Schedule, shuffled_batches

BETAS, EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults


class StackedStudents:
    """K students of one architecture as stacked tensors, with one Adam state each."""

    def __init__(self, models: list[nn.Module]):
        self.base = copy.deepcopy(models[0]).to("meta")
        params, buffers = stack_module_state(models)
        self.params = {k: v.detach() for k, v in params.items()}
        self.buffers = buffers
        self.size = len(models)
        self.moments = {k: (torch.zeros_like(v), torch.zeros_like(v)) for k, v in self.params.items()}
        self.steps = [0] * self.size  # Adam steps each student has taken
        self.grouped = groupable(models[0])

    def adam_state(self, i: int, model: nn.Module) -> dict:
        """Student ``i``'s Adam state as ``torch.optim.Adam`` keeps it for ``model``'s
        parameters, so a per-client optimiser continues where the stacked steps left off."""
        return {p: {"step": torch.tensor(float(self.steps[i])), "exp_avg": self.moments[name][0][i].clone(),
                    "exp_avg_sq": self.moments[name][1][i].clone()}
                for name, p in model.named_parameters()} if self.steps[i] else {}

    def unstack(self, models: list[nn.Module]) -> None:
        """Write each student's weights back into ``models`` (in order)."""
        with torch.no_grad():
            for i, model in enumerate(models):
                for name, p in model.named_parameters():
                    p.copy_(self.params[name][i])

    def logits(self, x: torch.Tensor, shared: bool = False, params: dict[str, torch.Tensor] | None = None
               ) -> torch.Tensor:
        """(K, n, classes): every student on its own rows ``x`` of shape (K, n, ...), or with
        ``shared`` on the same rows ``x`` of shape (n, ...); ``params`` (default: the
        students') may be tensors that require gradients."""
        params = self.params if params is None else params
        if self.grouped:  # params may be a subset of the students
            return grouped_logits(self.base, params, x, len(next(iter(params.values()))), shared)
        if shared:
            return vmap(lambda p, b: functional_call(self.base, (p, b), (x,)))(params, self.buffers)
        return vmap(lambda p, b, xs: functional_call(self.base, (p, b), (xs,)))(params, self.buffers, x)


def digest_stacked(students: StackedStudents, public_x: torch.Tensor, teacher: torch.Tensor,
                   private: list[tuple[torch.Tensor, torch.Tensor]], s: Schedule,
                   generators: list[torch.Generator]) -> list[float]:
    """``fedkd.training.loops.digest`` for K students at once (soft-labels knowledge): each
    fits ``teacher`` on ``public_x`` in its own batch order, mixed by ``kd_weight`` with
    the hard loss on its own private picks; returns each student's mean soft loss."""
    soft_loss = SOFT_LOSSES[s.soft_loss]
    mixed = s.kd_weight < 1
    device = public_x.device

    def loss(logits, target, y):  # one student's, on its batch
        n = len(target)
        soft = soft_loss(logits[:n], target, s.temperature)
        hard = F.cross_entropy(logits[n:], y) if mixed else soft * 0
        total = s.kd_weight * soft + (1 - s.kd_weight) * hard if mixed else soft
        return total, soft

    def vmapped(params, buffers, x, target, y):
        return loss(functional_call(students.base, (params, buffers), (x,)), target, y)

    def grouped(x, target, y):  # each student's loss depends on its own weights only
        params = {k: v.detach().requires_grad_() for k, v in students.params.items()}
        total, soft = vmap(loss)(students.logits(x, params=params), target, y)
        return dict(zip(params, torch.autograd.grad(total.sum(), list(params.values())))), soft.detach()

    step = grouped if students.grouped else partial(vmap(grad(vmapped, has_aux=True)), students.params,
                                                    students.buffers)
    losses: list[list[float]] = [[] for _ in range(students.size)]
    if mixed:
        private_x, private_y, offsets = _pooled(private)
    for _ in range(s.distill_epochs):
        orders = [s.kind.batches(len(public_x), s.batch_size, g) for g in generators]
        for b in range(len(orders[0])):
            batches = torch.stack([order[b] for order in orders])  # (K, rows): every member's ids
            x, y = public_x[batches], torch.zeros(students.size, 0, dtype=torch.long)
            if mixed:  # each member's picks drawn after its batch order, as digest draws them
                picks = torch.stack([torch.randint(len(py), (batches.shape[1],), generator=g)
                                     for (_, py), g in zip(private, generators)]) + offsets.unsqueeze(1)
                x, y = torch.cat([x, private_x[picks]], dim=1), private_y[picks]
            grads, soft = step(x.to(device), teacher[batches].to(device), y.to(device))
            students.steps = [t + 1 for t in students.steps]  # every student steps: their batches line up
            _adam(students.params, grads, students.moments, students.steps[0], s.lr)
            for i, value in enumerate(soft.tolist()):
                losses[i].append(value)
    return _means(losses)


def revisit_stacked(students: StackedStudents, private: list[tuple[torch.Tensor, torch.Tensor]], epochs: int,
                    batch_size: int, lr: float, generators: list[torch.Generator]) -> list[float]:
    """``fedkd.training.loops.revisit`` for K students of ``groupable`` architecture that
    have taken the same Adam steps: each trains on its own shard, in its own batch order.
    Shards differ in size, so each student has its own number of steps: one whose
    batches are done stops there (its weights and Adam state as its last step left
    them; the others go on with the same step count, one more each step), and a short
    batch (an epoch's last) is padded with rows that its loss does not count. Returns
    each student's mean hard loss."""
    if not students.grouped or len(set(students.steps)) > 1:
        raise ValueError("revisit_stacked takes groupable students with the same Adam steps")
    device = students.params[next(iter(students.params))].device
    plans = [[batch for _ in range(epochs) for batch in shuffled_batches(len(y), batch_size, g)]  # revisit's draws
             for (_, y), g in zip(private, generators)]
    private_x, private_y, offsets = _pooled(private)
    firsts = offsets.tolist()  # each shard's first row in the pool
    losses: list[list[float]] = [[] for _ in range(students.size)]
    start = students.steps[0]
    for step in range(max(map(len, plans))):
        active = [i for i, plan in enumerate(plans) if step < len(plan)]
        sizes = torch.tensor([len(plans[i][step]) for i in active])
        rows = int(sizes.max())
        ids = torch.stack([F.pad(plans[i][step] + firsts[i], (0, rows - len(plans[i][step])), value=firsts[i])
                           for i in active])  # a short batch padded with a row of the student's own
        counted = (torch.arange(rows) < sizes.unsqueeze(1)).to(device)
        whole = len(active) == students.size
        index = None if whole else torch.tensor(active, device=device)
        params = {k: (v if whole else v[index]).detach().requires_grad_() for k, v in students.params.items()}
        logits = students.logits(private_x[ids].to(device), params=params)
        y = private_y[ids].to(device)
        hard = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(len(active), rows)
        loss = (hard * counted).sum(1) / sizes.to(device)  # each student's mean over its own rows
        grads = dict(zip(params, torch.autograd.grad(loss.sum(), list(params.values()))))
        if whole:
            _adam(students.params, grads, students.moments, start + step + 1, lr)
        else:
            params = {k: v.detach() for k, v in params.items()}
            moments = {k: (m[index], v[index]) for k, (m, v) in students.moments.items()}
            _adam(params, grads, moments, start + step + 1, lr)
            with torch.no_grad():
                for k, v in params.items():
                    students.params[k][index] = v
                    students.moments[k][0][index], students.moments[k][1][index] = moments[k]
        for i, value in zip(active, loss.tolist()):
            losses[i].append(value)
            students.steps[i] += 1
    return _means(losses)


def _pooled(private: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every student's shard in one tensor (so a step's rows are one gather), and where
    each shard starts in it."""
    offsets = torch.tensor([0] + [len(y) for _, y in private[:-1]]).cumsum(0)
    return torch.cat([x for x, _ in private]), torch.cat([y for _, y in private]), offsets


def _means(losses: list[list[float]]) -> list[float]:
    return [sum(v) / len(v) if v else float("nan") for v in losses]


def _adam(params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor],
          moments: dict[str, tuple[torch.Tensor, torch.Tensor]], t: int, lr: float) -> None:
    """One step of ``torch.optim.Adam`` (its defaults) on every stacked tensor."""
    b1, b2 = BETAS
    c1, c2 = 1 - b1 ** t, 1 - b2 ** t
    with torch.no_grad():
        for name, p in params.items():
            m, v = moments[name]
            g = grads[name]
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v.sqrt() / (c2 ** 0.5)).add_(EPS)
            p.addcdiv_(m, denom, value=-lr / c1)


def predict_stacked(students: StackedStudents, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """(K, n, classes) logits of every student on the same rows ``x`` (n, ...), on the host,
    one student at a time: on shared rows the batch is already large, and K students at
    once were slower on a CPU (measured, cnn-s: a vmapped convolution 4x; a grouped one
    on channels-last maps 1.2x)."""
    device = students.params[next(iter(students.params))].device
    out = []
    with torch.no_grad():
        for i in range(students.size):
            params = {k: v[i] for k, v in students.params.items()}
            buffers = {k: v[i] for k, v in students.buffers.items()}
            out.append(torch.cat([_one(students, params, buffers, x[j:j + batch_size].to(device)).cpu()
                                  for j in range(0, len(x), batch_size)]))
    return torch.stack(out)


def _one(students: StackedStudents, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
         rows: torch.Tensor) -> torch.Tensor:
    if students.grouped:
        return one_student(students.base, params, rows, features=False)
    return functional_call(students.base, (params, buffers), (rows,))
