"""Fusion's auxiliary branch classifiers (``[model.params] aux``): a training-only loss term,
not part of the evaluated or exported model."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kiloml.compress.lowering import lower

from kiloml.train.loop import EpochData, TrainConfig, fit
from kiloml.train.models import ModelError, build_model


def _pair(aux: float):
    torch.manual_seed(0)
    m = build_model("fusion", (10,), 3, sizes=[6, 4], branch=[8], hidden=[12], aux=aux)
    torch.manual_seed(0)
    plain = build_model("fusion", (10,), 3, sizes=[6, 4], branch=[8], hidden=[12])
    plain.load_state_dict({k: v for k, v in m.state_dict().items()
                           if not k.startswith("aux_heads")})
    return m, plain


def test_aux_loss_is_the_mean_of_the_branch_cross_entropies():
    m, _ = _pair(0.7)
    m.train()
    torch.manual_seed(1)
    x, y = torch.randn(16, 10), torch.randint(0, 3, (16,))
    torch.manual_seed(2)
    m(x)
    got = m.extra_loss(y)
    # the oracle: the same branches (same dropout draw) and classifiers, by hand
    torch.manual_seed(2)
    h0 = m.branches[0](x[:, :6])
    h1 = m.branches[1](x[:, 6:])
    want = 0.7 * (F.cross_entropy(m.aux_heads[0](h0), y)
                  + F.cross_entropy(m.aux_heads[1](h1), y)) / 2
    assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-6)
    assert m.extra_loss(y) == 0.0          # consumed: no stale term on the next batch
    lam, perm = 0.3, torch.randperm(16)
    torch.manual_seed(3)
    m(x)
    mixed = m.extra_loss(y, (lam, perm))
    torch.manual_seed(3)
    o = [m.aux_heads[0](m.branches[0](x[:, :6])), m.aux_heads[1](m.branches[1](x[:, 6:]))]
    want = 0.7 * sum(lam * F.cross_entropy(v, y) + (1 - lam) * F.cross_entropy(v, y[perm])
                     for v in o) / 2
    assert float(mixed.detach()) == pytest.approx(float(want.detach()), rel=1e-6)


def test_aux_heads_are_not_in_the_evaluated_or_exported_model():
    m, plain = _pair(1.0)
    m.eval()
    plain.eval()
    x = torch.randn(5, 10)
    assert torch.equal(m(x), plain(x))
    assert m.extra_loss(torch.zeros(5, dtype=torch.long)) == 0.0   # eval sets no aux outputs
    a, b = lower(m, x[:1]), lower(plain, x[:1])
    assert np.allclose(a(x).detach().numpy(), b(x).detach().numpy())
    assert len(list(a.parameters())) == len(list(b.parameters()))
    assert not any(p.shape == m.aux_heads[0].weight.shape and torch.equal(p, m.aux_heads[0].weight)
                   for p in a.parameters())


def test_fit_trains_the_aux_heads_only_when_asked():
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(64, 10)), dtype=torch.float32)
    y = torch.tensor(rng.integers(0, 3, 64))
    for aux in (1.0, 0.0):
        torch.manual_seed(0)
        m = build_model("fusion", (10,), 3, sizes=[6, 4], branch=[8], hidden=[12], aux=aux)
        heads = None if m.aux_heads is None else m.aux_heads[0].weight.detach().clone()
        fit(m, lambda e: EpochData(x, y), TrainConfig(epochs=1, batch_size=16), progress=False)
        if aux:
            assert not torch.equal(heads, m.aux_heads[0].weight)
        else:
            assert m.aux_heads is None


def test_aux_one_sensor_or_negative():
    assert build_model("fusion", (10,), 3, aux=1.0).aux_heads is None
    with pytest.raises(ModelError, match="aux must be >= 0"):
        build_model("fusion", (10,), 3, sizes=[6, 4], aux=-1.0)


def test_aux_skip_missing_leaves_out_the_windows_whose_sensor_was_dropped():
    """``aux_skip_missing``: branch k's term is the cross-entropy of its classifier over the
    windows whose slice k differs from the missing-sensor input (the DSP of zeros), computed
    here by hand on the kept rows only."""
    torch.manual_seed(0)
    m = build_model("fusion", (10,), 3, sizes=[6, 4], branch=[8], hidden=[12], aux=0.5,
                    aux_skip_missing=True)
    z = torch.linspace(-1, 1, 10)                # what a zeroed sensor's features become
    m.set_missing_input(z)
    m.train()
    torch.manual_seed(1)
    x, y = torch.randn(16, 10), torch.randint(0, 3, (16,))
    x[:5, :6] = z[:6]                            # the phone dropped in windows 0-4
    x[5:7, 6:] = z[6:]                           # the watch in windows 5-6
    torch.manual_seed(2)
    m(x)
    got = m.extra_loss(y)
    torch.manual_seed(2)
    h0 = m.branches[0](x[:, :6])
    h1 = m.branches[1](x[:, 6:])
    want = 0.5 * (F.cross_entropy(m.aux_heads[0](h0)[5:], y[5:])
                  + F.cross_entropy(m.aux_heads[1](h1)[np.r_[0:5, 7:16]],
                                    y[np.r_[0:5, 7:16]])) / 2
    assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-6)
    # without the setting every window counts (the term differs)
    every = 0.5 * (F.cross_entropy(m.aux_heads[0](h0), y)
                   + F.cross_entropy(m.aux_heads[1](h1), y)) / 2
    assert abs(float(every.detach()) - float(got.detach())) > 1e-3
    # a branch whose sensor was dropped in every window adds nothing
    x[:, 6:] = z[6:]
    torch.manual_seed(2)
    m(x)
    got = m.extra_loss(y)
    torch.manual_seed(2)
    want = 0.5 * F.cross_entropy(m.aux_heads[0](m.branches[0](x[:, :6]))[5:], y[5:]) / 2
    assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-6)
    with pytest.raises(ModelError, match="9 values"):
        m.set_missing_input(np.zeros(9))


def test_head_hidden_gives_each_branch_classifier_its_own_hidden_layer():
    torch.manual_seed(0)
    m = build_model("fusion", (10,), 3, sizes=[6, 4], branch=[8], hidden=[12], aux=1.0,
                    head_hidden=[5])
    widths = [[mod.out_features for mod in h.modules() if isinstance(mod, torch.nn.Linear)]
              for h in m.aux_heads]
    assert widths == [[5, 3], [5, 3]]
    # the default stays one linear layer (same parameter names as before)
    plain = build_model("fusion", (10,), 3, sizes=[6, 4], branch=[8], hidden=[12], aux=1.0)
    assert isinstance(plain.aux_heads[0], torch.nn.Linear)
    with pytest.raises(ModelError, match="head_hidden"):
        build_model("fusion", (10,), 3, sizes=[6, 4], aux=1.0, head_hidden=[0])


def test_head_from_features_is_a_network_of_its_own():
    """``head_from = "features"``: each sensor's own classifier reads that sensor's slice of
    the input, not its branch; its loss trains nothing of the fused path, and its output is
    the head applied to the slice."""
    torch.manual_seed(0)
    m = build_model("fusion", (10,), 3, sizes=[6, 4], branch=[8], hidden=[12], aux=1.0,
                    head_hidden=[5], head_from="features")
    assert [h[0].in_features for h in m.aux_heads] == [6, 4]
    m.train()
    x, y = torch.randn(16, 10), torch.randint(0, 3, (16,))
    m(x)
    m.extra_loss(y).backward()
    assert all(p.grad is None for p in [*m.branches.parameters(), *m.head.parameters(),
                                        *m.classifier.parameters()])
    assert all(p.grad is not None for p in m.aux_heads.parameters())
    m.eval()
    heads = m.all_heads(x)
    assert torch.equal(heads[1], m.aux_heads[0](x[:, :6]))
    assert torch.equal(heads[2], m.aux_heads[1](x[:, 6:]))
    assert torch.equal(heads[0], m(x))
    with pytest.raises(ModelError, match="head_from"):
        build_model("fusion", (10,), 3, sizes=[6, 4], aux=1.0, head_from="input")
