"""Pruning: structured channel pruning really removes channels (exactly, when the removed
channels carry nothing), keeps residual connections aligned, makes the compiled model smaller
and faster; unstructured magnitude pruning reaches its sparsity and keeps it."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trainhelp as H  # noqa: E402
from kiloml.compress.prune import channel_prune, count_params, magnitude_prune, sparsity  # noqa: E402
from kiloml.compress.quantize import calibrate, lower, to_graph  # noqa: E402
from kiloml.train.models import build_model, input_layout, to_model_input  # noqa: E402

torch.set_num_threads(2)


def _net(arch, fshape, nc, params, seed=0):
    torch.manual_seed(seed)
    m = build_model(arch, fshape, nc, **params)
    H.randomize_bn(m, seed)
    x = torch.as_tensor(to_model_input(np.random.default_rng(seed).normal(0, 1, (16,) + fshape),
                                       input_layout(arch, fshape)))
    return lower(m, x[:1], append_softmax=nc > 0), x


def _out(net, x):
    net.set_mode("float")
    with torch.no_grad():
        return net(x, logits=True)


def test_removing_dead_channels_is_exact():
    """Channels whose producer weights and bias are zero contribute nothing after ReLU:
    removing them must not change the output at all, and they must be the ones removed."""
    net, x = _net("ds-cnn", (49, 10), 12, {"channels": 16, "blocks": 2})
    with torch.no_grad():
        for op in net.ops:
            if op.kind == "conv":         # every other channel, also the depthwise biases
                op.weight[::2] = 0        # (a bias would carry a constant through ReLU)
                op.bias[::2] = 0
    before = _out(net, x)
    rep = channel_prune(net, 0.5)
    after = _out(net, x)
    pw = [op for op in net.ops if op.kind == "conv" and not op.depthwise]
    assert rep and all(v == (16, 8) for v in rep.values())
    assert all(op.weight.shape[0] == 8 for op in pw)
    assert torch.allclose(before, after, atol=1e-5)
    assert net.shapes[net.ops[0].output][1] == 8


def test_channel_pruning_shrinks_and_exports():
    net, x = _net("ds-cnn", (49, 10), 12, {"channels": 32, "blocks": 3})
    p0, m0 = count_params(net), net.macs()
    channel_prune(net, 0.5, multiple=4)
    assert count_params(net) < 0.45 * p0 and net.macs() < 0.4 * m0
    calibrate(net, [x])
    g = to_graph(net)                                     # every node passes its op check
    assert g.weights_bytes() < 0.5 * count_params(_net("ds-cnn", (49, 10), 12,
                                                       {"channels": 32, "blocks": 3})[0])


def test_residual_connections_stay_aligned():
    net, x = _net("resnet8", (16, 16, 3), 10, {"width": 8})
    before = {op.op_name: op.weight.shape[0] for op in net.ops if op.kind == "conv"}
    rep = channel_prune(net, 0.5)
    after = {op.op_name: op.weight.shape[0] for op in net.ops if op.kind == "conv"}
    # only the first conv of each residual block (its output stays inside the block) shrinks
    assert set(rep) == {"stack1.conv1", "stack2.conv1", "stack3.conv1"}
    for name in before:
        if name not in rep:
            assert after[name] == before[name]
    calibrate(net, [x])
    to_graph(net)


def test_pruned_model_is_smaller_and_faster_on_the_board(tmp_path):
    """Compiled for a Cortex-M4 and run in the emulator: fewer flash bytes, fewer cycles.
    Both with the same kernel policy (``prefer="size"``): under ``balanced`` a pruned model
    may buy a faster kernel with the flash it saved, which is a choice, not a pruning result."""
    from kiloml.targets.profile import profile_graph

    net, x = _net("ds-cnn", (49, 10), 12, {"channels": 32, "blocks": 2})
    calibrate(net, [x])
    full = profile_graph(to_graph(net), "nano33ble", prefer="size")
    pruned = copy.deepcopy(net)
    channel_prune(pruned, 0.5, multiple=4)
    calibrate(pruned, [x])
    small = profile_graph(to_graph(pruned), "nano33ble", prefer="size")
    assert full["output_matches_reference"] and small["output_matches_reference"]
    assert small["flash_bytes"] < full["flash_bytes"]
    assert small["weights_bytes"] < 0.5 * full["weights_bytes"]
    assert small["cycles"] < 0.6 * full["cycles"]


def test_magnitude_pruning_reaches_and_keeps_its_sparsity():
    net, x = _net("cnn1d", (50, 3), 4, {"channels": (8, 16)})
    per_layer = magnitude_prune(net, 0.6)
    assert all(abs(s - 0.6) < 0.05 for s in per_layer.values())
    assert abs(sparsity(net) - 0.6) < 0.05
    net.set_mode("float").train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(3):                                    # training cannot revive pruned weights
        loss = net(x, logits=True).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert abs(sparsity(net) - 0.6) < 0.05
    calibrate(net.eval(), [x])
    g = to_graph(net)
    w = [t.data for n in g.nodes if n.op in ("CONV_2D", "FULLY_CONNECTED")
         for t in [g.tensors[n.inputs[1]]]]
    assert np.mean(np.concatenate([a.reshape(-1) for a in w]) == 0) >= 0.55
