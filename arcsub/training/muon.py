"""Muon and NorMuon for the hidden weight matrices, AdamW for everything else, in one torch optimizer.

Muon (Jordan et al., 2024) replaces a matrix's momentum update by its nearest semi-orthogonal matrix (all
singular values 1, found with a few Newton-Schulz iterations), so every direction of the weight moves at the
same rate instead of the few dominant ones. NorMuon (Li et al., 2025) then evens out the rows: each output
neuron's update is divided by a running RMS of its own past updates, keeping the total norm. mdlARC trained
its 44 % model with NorMuon. Embeddings, norms and the output head stay with AdamW, as in every Muon recipe.

Updates are scaled to an RMS of 0.2 (Liu et al., 2025, "Muon is scalable"), the size of a typical AdamW step,
so one learning rate and one schedule (arcsub.training.runtime.lr_at through LambdaLR) serve both kinds of parameters.

The step is batched: matrices of one shape go through Newton-Schulz as one stacked tensor, and the element-wise
updates are torch._foreach calls. A loop over tensors launches ~50 small kernels per matrix from Python, and
on the task model's steps (16 matrices, ~30 ms) those launches, not the GPU, set the optimizer's time
(bench/bench_task_step.py, docs/benchmarks.md). The loop stays (batched=False) as the reference the batched
step is tested and timed against; both keep the same per-parameter state, so checkpoints move between them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable

import torch
from torch import nn

from arcsub.core.device import fast_matmul_dtype

NS_COEFFS = (3.4445, -4.7750, 2.0315)  # quintic iteration tuned to push singular values into ~[0.7, 1.2] fast
ADAMW_RMS = 0.2


def newton_schulz(g: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """An approximately semi-orthogonal matrix with the singular vectors of g (its 'zeroth power').

    bf16 on CUDA cards with bf16 tensor cores (the iteration tolerates it), fp32 elsewhere (CPU; T4, whose
    bf16 is emulated or missing). Works on the wide orientation so the Gram matrix X X^T is the small one.
    """
    a, b, c = NS_COEFFS
    x = g.to(fast_matmul_dtype(g.device))
    tall = x.shape[-2] > x.shape[-1]
    if tall:
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + eps)
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.mT if tall else x).to(g.dtype)


class Muon(torch.optim.Optimizer):
    """One optimizer over two kinds of parameter groups: {"muon": True} (2-D matrices) and AdamW groups.

    Muon groups: momentum (Nesterov) -> Newton-Schulz -> optional NorMuon row normalisation -> RMS 0.2 ->
    decoupled weight decay and step. AdamW groups: the usual AdamW with bias correction.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        normalize: bool = True,
        beta2: float = 0.95,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        batched: bool = True,
    ):
        self.batched = batched
        defaults = dict(
            lr=lr,
            momentum=momentum,
            nesterov=nesterov,
            ns_steps=ns_steps,
            normalize=normalize,
            beta2=beta2,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            muon=False,
        )
        super().__init__(params, defaults)
        for group in self.param_groups:
            if group["muon"] and any(p.ndim != 2 for p in group["params"]):
                raise ValueError("Muon groups take 2-D weight matrices only")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if not self.batched:
                (self._muon if group["muon"] else self._adamw)(group, params)
            elif group["muon"]:
                for same_shape in by_key(params, lambda p: tuple(p.shape)):
                    self._muon_stacked(group, same_shape)
            else:
                for same_step in by_key(params, lambda p: self.state[p].get("step", 0)):
                    self._adamw_foreach(group, same_step)
        return loss

    def _muon_state(self, group: dict, p: torch.Tensor) -> dict:
        state = self.state[p]
        if not state:
            state["momentum"] = torch.zeros_like(p)
            if group["normalize"]:
                state["row_sq"] = torch.zeros(p.shape[0], 1, device=p.device, dtype=torch.float32)
        return state

    def _adamw_state(self, p: torch.Tensor) -> dict:
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        return state

    def _muon_stacked(self, group: dict, params: list[torch.Tensor]) -> None:
        """_muon's update for matrices of one shape at once: one stacked Newton-Schulz, foreach element-wise."""
        lr, mom, wd = group["lr"], group["momentum"], group["weight_decay"]
        states = [self._muon_state(group, p) for p in params]
        grads = [p.grad for p in params]
        bufs = [s["momentum"] for s in states]
        torch._foreach_lerp_(bufs, grads, 1 - mom)
        ahead = torch._foreach_lerp(grads, bufs, mom) if group["nesterov"] else bufs
        update = newton_schulz(torch.stack(ahead), group["ns_steps"]).float()
        if group["normalize"]:
            norm = update.norm(dim=(-2, -1), keepdim=True)
            kept = [s["row_sq"] for s in states]
            row_sq = torch.stack(kept)
            row_sq.lerp_(update.square().mean(dim=-1, keepdim=True), 1 - group["beta2"])
            torch._foreach_copy_(kept, list(row_sq.unbind(0)))
            update = update / (row_sq.sqrt() + group["eps"])
            update *= norm / (update.norm(dim=(-2, -1), keepdim=True) + group["eps"])
        update *= ADAMW_RMS * math.sqrt(max(params[0].shape))
        torch._foreach_mul_(params, 1 - lr * wd)
        torch._foreach_add_(params, list(update.to(params[0].dtype).unbind(0)), alpha=-lr)

    def _adamw_foreach(self, group: dict, params: list[torch.Tensor]) -> None:
        """_adamw's update for tensors at one step count at once (foreach calls: a few launches in all)."""
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        b1, b2 = group["betas"]
        states = [self._adamw_state(p) for p in params]
        for s in states:
            s["step"] += 1
        t = states[0]["step"]
        grads = [p.grad for p in params]
        exp_avg = [s["exp_avg"] for s in states]
        exp_avg_sq = [s["exp_avg_sq"] for s in states]
        torch._foreach_lerp_(exp_avg, grads, 1 - b1)
        torch._foreach_mul_(exp_avg_sq, b2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=1 - b2)
        denom = torch._foreach_div(exp_avg_sq, 1 - b2**t)
        torch._foreach_sqrt_(denom)
        torch._foreach_add_(denom, eps)
        torch._foreach_mul_(params, 1 - lr * wd)
        torch._foreach_addcdiv_(params, exp_avg, denom, value=-lr / (1 - b1**t))

    def _muon(self, group: dict, params: list[torch.Tensor]) -> None:
        lr, mom, wd = group["lr"], group["momentum"], group["weight_decay"]
        for p in params:
            state = self._muon_state(group, p)
            buf = state["momentum"]
            buf.lerp_(p.grad, 1 - mom)
            update = newton_schulz(
                p.grad.lerp(buf, mom) if group["nesterov"] else buf, group["ns_steps"]
            ).float()
            if group["normalize"]:
                norm = update.norm()
                state["row_sq"].lerp_(update.square().mean(dim=1, keepdim=True), 1 - group["beta2"])
                update = update / (state["row_sq"].sqrt() + group["eps"])
                update *= norm / (update.norm() + group["eps"])
            update *= ADAMW_RMS * math.sqrt(max(p.shape))  # an orthogonal update has RMS 1/sqrt(max side)
            p.mul_(1 - lr * wd)
            p.add_(update.to(p.dtype), alpha=-lr)

    def _adamw(self, group: dict, params: list[torch.Tensor]) -> None:
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        b1, b2 = group["betas"]
        for p in params:
            state = self._adamw_state(p)
            state["step"] += 1
            t = state["step"]
            state["exp_avg"].lerp_(p.grad, 1 - b1)
            state["exp_avg_sq"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            denom = (state["exp_avg_sq"] / (1 - b2**t)).sqrt_().add_(eps)
            p.mul_(1 - lr * wd)
            p.addcdiv_(state["exp_avg"], denom, value=-lr / (1 - b1**t))


def by_key(params: list[torch.Tensor], key: Callable[[torch.Tensor], Hashable]) -> list[list[torch.Tensor]]:
    """The tensors split into lists of one key each (a shape, a step count), in first-seen order."""
    groups: dict = defaultdict(list)
    for p in params:
        groups[key(p)].append(p)
    return list(groups.values())


def muon_param_groups(
    model: nn.Module, weight_decay: float, exclude: tuple[str, ...] = ("lm_head",)
) -> list[dict]:
    """Hidden Linear weights -> Muon (decayed); other Linear weights (the head) -> AdamW (decayed); embeddings,
    norms and biases -> AdamW without decay.

    Why the head and embeddings stay with AdamW: a classifier and lookup tables are not linear maps whose
    singular directions should move at equal rates (the Muon authors' recipe). Why embeddings are not decayed:
    rows of tasks absent from a run (old tasks during test-time training) must stay exactly as they were."""
    linear = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    excluded = {n for n in linear if any(n == e or n.endswith("." + e) for e in exclude)}
    muon = {id(m.weight) for n, m in linear.items() if n not in excluded}
    head = {id(linear[n].weight) for n in excluded}
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if id(p) in muon], "muon": True, "weight_decay": weight_decay},
        {"params": [p for p in trainable if id(p) in head], "weight_decay": weight_decay},
        {"params": [p for p in trainable if id(p) not in muon | head], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_muon(model: nn.Module, o) -> Muon:
    """Muon (o.name == "muon") or NorMuon ("normuon") from an optimizer settings object (arcsub.taskmodel.train)."""
    return Muon(
        muon_param_groups(model, o.weight_decay),
        lr=o.lr,
        momentum=o.momentum,
        ns_steps=o.ns_steps,
        normalize=o.name == "normuon",
        beta2=o.beta2,
        betas=tuple(o.betas),
    )
