"""Muon / NorMuon: Newton-Schulz orthogonalises, steps have the promised shape and size, groups, state."""

from __future__ import annotations

import io

import pytest
import torch
from test_taskmodel import one_thread, tiny  # noqa: F401  (the fixture applies here too)

from arcsub.training.muon import ADAMW_RMS, Muon, muon_param_groups, newton_schulz


def _svals(x: torch.Tensor) -> torch.Tensor:
    return torch.linalg.svdvals(x.double())


@pytest.mark.parametrize("shape", [(64, 32), (32, 64), (96, 48)])
def test_newton_schulz_gives_singular_values_near_one(shape):
    g = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    assert _svals(g).max() / _svals(g).min() > 2  # the input is far from orthogonal
    s = _svals(newton_schulz(g))
    assert 0.6 < s.min() and s.max() < 1.25
    # an ill-conditioned matrix (singular values over 4 decades) needs a few more iterations
    u, _ = torch.linalg.qr(torch.randn(64, 64, generator=torch.Generator().manual_seed(1)))
    v, _ = torch.linalg.qr(torch.randn(32, 32, generator=torch.Generator().manual_seed(2)))
    hard = u[:, :32] @ torch.diag(torch.logspace(-3, 1, 32)) @ v.T
    s = _svals(newton_schulz(hard, steps=10))
    assert 0.6 < s.min() and s.max() < 1.25
    # the singular vectors are kept: U V^T of the input, up to the scale of the singular values
    uu, _, vv = torch.linalg.svd(g, full_matrices=False)
    cos = torch.nn.functional.cosine_similarity(newton_schulz(g).flatten(), (uu @ vv).flatten(), dim=0)
    assert cos > 0.95


def _one_step(normalize: bool, shape=(48, 24), lr=0.1) -> tuple[torch.Tensor, torch.Tensor]:
    w = torch.nn.Parameter(torch.randn(shape, generator=torch.Generator().manual_seed(3)))
    w.grad = torch.randn(shape, generator=torch.Generator().manual_seed(4))
    before = w.detach().clone()
    opt = Muon([{"params": [w], "muon": True}], lr=lr, momentum=0.0, nesterov=False, normalize=normalize)
    opt.step()
    return (before - w.detach()) / lr, w.grad


def test_muon_step_is_an_orthogonalised_gradient_at_adamw_scale():
    delta, grad = _one_step(normalize=False)
    assert delta.square().mean().sqrt() == pytest.approx(ADAMW_RMS, rel=0.25)
    s = _svals(delta / (ADAMW_RMS * 48**0.5))
    assert 0.6 < s.min() and s.max() < 1.25
    assert (delta * grad).sum() > 0  # a descent direction


def test_normuon_evens_out_rows_and_keeps_the_norm():
    plain, _ = _one_step(normalize=False)
    normed, grad = _one_step(normalize=True)
    assert normed.norm().item() == pytest.approx(plain.norm().item(), rel=1e-4)
    rows = normed.norm(dim=1)
    assert rows.std() / rows.mean() < 1e-3  # every output neuron moves the same amount
    assert plain.norm(dim=1).std() / plain.norm(dim=1).mean() > 0.01
    assert (normed * grad).sum() > 0


def test_param_groups_and_training_with_state_round_trip():
    model = tiny(num_tasks=3)
    groups = muon_param_groups(model, weight_decay=0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    muon = {names[id(p)] for p in groups[0]["params"]}
    assert groups[0]["muon"] and all(
        n.endswith(("qkv.weight", "out.weight", "gate_up.weight", "down.weight")) for n in muon
    )
    assert len(muon) == 4 * model.config.num_hidden_layers
    assert {names[id(p)] for p in groups[1]["params"]} == {"lm_head.weight"} and groups[1][
        "weight_decay"
    ] == 0.1
    rest = {names[id(p)] for p in groups[2]["params"]}
    assert {"embed_tokens.weight", "embed_tasks.weight", "embed_views.weight"} <= rest and groups[2][
        "weight_decay"
    ] == 0
    with pytest.raises(ValueError):
        Muon([{"params": [model.norm.weight], "muon": True}])

    x = torch.randint(0, 10, (4, 12))

    def loss_fn(m):
        return m(x, torch.tensor([0, 1, 2, 0]), 0, labels=x).loss  # learn to copy the next token

    opt = Muon(muon_param_groups(model, 0.1), lr=0.01, weight_decay=0.1)
    first = loss_fn(model).item()
    for _ in range(10):
        opt.zero_grad()
        loss_fn(model).backward()
        opt.step()
    assert loss_fn(model).item() < 0.8 * first
    # a fresh optimizer loaded from the state dict takes exactly the same next step
    twin = tiny(num_tasks=3)
    twin.load_state_dict(model.state_dict())
    opt2 = Muon(muon_param_groups(twin, 0.1), lr=0.02, weight_decay=0.1)
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)  # as a checkpoint does (load_state_dict alone would share the tensors)
    buf.seek(0)
    opt2.load_state_dict(torch.load(buf))
    for m, o in ((model, opt), (twin, opt2)):
        o.zero_grad()
        loss_fn(m).backward()
        o.step()
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["normuon", "muon"])
def test_the_batched_step_is_the_per_tensor_loop(name):
    """The stacked Newton-Schulz and foreach updates take the loop's steps (same state, same weights) on a
    model whose matrices come in several shapes, and a checkpoint of one continues in the other."""
    x = torch.randint(0, 10, (4, 12))
    models = [tiny(num_tasks=3) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    opts = [
        Muon(muon_param_groups(m, 0.1), lr=0.01, weight_decay=0.1, normalize=name == "normuon", batched=b)
        for m, b in zip(models, (False, True), strict=True)
    ]
    assert len({tuple(p.shape) for p in opts[1].param_groups[0]["params"]}) >= 3
    for _ in range(3):
        for m, o in zip(models, opts, strict=True):
            o.zero_grad()
            m(x, torch.tensor([0, 1, 2, 0]), 0, labels=x).loss.backward()
            o.step()
        for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    loop, batched = (o.state_dict()["state"] for o in opts)
    assert loop.keys() == batched.keys()
    for k in loop:
        assert loop[k].keys() == batched[k].keys()
        for key, v in loop[k].items():
            if torch.is_tensor(v):
                torch.testing.assert_close(v, batched[k][key], rtol=1e-5, atol=1e-6)
            else:
                assert v == batched[k][key]
