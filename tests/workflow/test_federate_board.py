"""A board as a federated client: the personalization C's gateway functions (export the head
and the samples, import a global head, update from it) on the host under ASan/UBSan and
cross-compiled in the emulator, against the Python encoders and the twin's client update.
The global head is one made by the federated pieces (two FedAvg rounds of the twin's client
updates and the int8 mean over the 6 training people; test_federate checks that a Flower run
computes the same as these pieces)."""

from __future__ import annotations

import numpy as np
import pytest

from fedhelp import HELD_OUT, make_fleet

from kiloml.deploy.personalize import (Settings, encode_head, find_head, requantize_head,
                                       train_head)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    return make_fleet(tmp_path_factory.mktemp("fedb"))


@pytest.fixture(scope="module")
def run(fleet):
    """{"global_head_message": hex} of two FedAvg rounds computed by the pieces."""
    from kiloml.workflow.deploy import project_spec
    from kiloml.workflow.federate import (FederateSettings, aggregate, client_update,
                                          factory_message, load_clients)
    from kiloml.workflow.project import load_project

    root, clients = fleet
    p = load_project(root)
    spec = project_spec(p)
    head = find_head(spec.graph)
    train = [c for c in load_clients(p, spec, head, clients) if c.name not in HELD_OUT]
    s = FederateSettings(rounds=2)
    blob = factory_message(head)
    for rnd in (1, 2):
        ups = [client_update(head, blob, c.feats, c.labels, s, rnd, i)
               for i, c in enumerate(train)]
        blob = aggregate(head, ups, [len(c.labels) for c in train])
    assert blob != factory_message(head)
    return {"global_head_message": blob.hex()}


def test_a_board_is_a_federated_client_through_the_gateway_format(fleet, run):
    """The C on the host (ASan/UBSan): the board exports its updated head and its samples as
    gateway messages equal to the Python encoders'; it installs the run's global head relayed
    by a gateway, retrains from it (update_from_slot) exactly as the twin's client update
    does, and refuses a corrupted message with its slot untouched."""
    from kiloml.deploy.personalize import (backbone_outputs, encode_samples, personalize,
                                           personalize_files, run_gateway_host)
    from kiloml.workflow.deploy import project_spec
    from kiloml.workflow.federate import load_clients, read_message
    from kiloml.workflow.project import load_project

    root, clients = fleet
    p = load_project(root)
    spec = project_spec(p)
    head = find_head(spec.graph)
    c = load_clients(p, spec, head, clients)[4]
    pick = np.random.default_rng(1).choice(len(c.labels), 12, replace=False)
    xs, ys = c.inputs[pick], c.labels[pick]
    s = Settings(epochs=3, lr=0.02, max_samples=16)
    msg = bytes.fromhex(run["global_head_message"])
    bad = bytearray(msg)
    bad[40] ^= 0x10
    got = run_gateway_host(personalize_files(head, "fz", s), head, "fz", xs, ys, msg, bytes(bad))
    assert got["head"] == encode_head(*personalize(head, xs, ys, s))
    assert got["samples"] == encode_samples(backbone_outputs(head, xs), ys, head.units)
    assert got["rc"] == 0
    start = read_message(head, msg, "test")
    want = encode_head(*requantize_head(head, *train_head(start, backbone_outputs(head, xs), ys, s)))
    assert got["head_after"] == want
    assert got["head_after"] != got["head"]
    assert got["rc_bad"] == -4 and got["head_after_bad"] == want


@pytest.mark.parametrize("board", ["nano33ble", "pico"])
def test_the_board_round_is_bit_exact_in_the_emulator(fleet, run, board):
    """The same round cross-compiled for the board (Cortex-M4F hard float, Cortex-M0+ soft
    float) and run in the emulator: the messages equal the Python encoders' and the twin's."""
    from kiloml.deploy.personalize import (backbone_outputs, encode_samples, personalize,
                                           personalize_files, run_gateway_emulator)
    from kiloml.deploy.spec import board_flags, find_board
    from kiloml.workflow.deploy import project_spec
    from kiloml.workflow.federate import load_clients, read_message
    from kiloml.workflow.project import load_project

    root, clients = fleet
    p = load_project(root)
    spec = project_spec(p)
    head = find_head(spec.graph)
    c = load_clients(p, spec, head, clients)[5]
    pick = np.random.default_rng(2).choice(len(c.labels), 9, replace=False)
    xs, ys = c.inputs[pick], c.labels[pick]
    s = Settings(epochs=2, lr=0.02, max_samples=12)
    msg = bytes.fromhex(run["global_head_message"])
    bid, b = find_board(board)
    got = run_gateway_emulator(personalize_files(head, "fz", s), head, "fz", xs, ys, msg,
                               str(b["core"]), board_flags(bid, str(b["core"])))
    feats = backbone_outputs(head, xs)
    assert got["head"] == encode_head(*personalize(head, xs, ys, s))
    assert got["samples"] == encode_samples(feats, ys, head.units)
    start = read_message(head, msg, "test")
    assert got["rc"] == 0
    assert got["head_after"] == encode_head(*requantize_head(head, *train_head(start, feats,
                                                                                ys, s)))


def test_a_board_is_a_fedprox_client_bit_exact_with_the_twin(fleet, run):
    """FedProx in the C (host, ASan/UBSan): the global head relayed by a gateway, then
    ``update_prox(mu)`` with the server's mu equals the twin's client update with the same
    proximal term byte for byte, and differs from the plain update (the term acts); the
    ``prox_mu`` setting gives the same through ``personalize_update`` from the factory head."""
    from kiloml.deploy.personalize import (backbone_outputs, personalize, personalize_files,
                                           run_gateway_host, run_update_host)
    from kiloml.workflow.deploy import project_spec
    from kiloml.workflow.federate import load_clients, read_message
    from kiloml.workflow.project import load_project

    root, clients = fleet
    p = load_project(root)
    spec = project_spec(p)
    head = find_head(spec.graph)
    c = load_clients(p, spec, head, clients)[3]
    pick = np.random.default_rng(4).choice(len(c.labels), 12, replace=False)
    xs, ys = c.inputs[pick], c.labels[pick]
    s = Settings(epochs=4, lr=0.05, max_samples=16)
    msg = bytes.fromhex(run["global_head_message"])
    start = read_message(head, msg, "test")
    feats = backbone_outputs(head, xs)
    mu = 2.5
    got = run_gateway_host(personalize_files(head, "fp", s), head, "fp", xs, ys, msg, msg[:-1],
                           prox_mu=mu)
    want = encode_head(*requantize_head(head, *train_head(start, feats, ys, s, prox_mu=mu)))
    plain = encode_head(*requantize_head(head, *train_head(start, feats, ys, s)))
    assert got["rc"] == 0 and got["head_after"] == want and want != plain
    assert got["rc_bad"] == -1 and got["head_after_bad"] == want
    sp = Settings(epochs=4, lr=0.05, max_samples=16, prox_mu=mu)
    q, ws, qb, _, _ = personalize(head, xs, ys, sp)
    dev = run_update_host(personalize_files(head, "fp", sp), head, "fp", xs, ys, sanitize=True)
    assert dev.weights.tobytes() == q.tobytes() and dev.bias.tobytes() == qb.tobytes()
    assert q.tobytes() != personalize(head, xs, ys, s)[0].tobytes()


def test_the_fedprox_round_is_bit_exact_in_the_emulator(fleet, run):
    """``update_prox`` cross-compiled for the Cortex-M0+ (software float) in the emulator."""
    from kiloml.deploy.personalize import (backbone_outputs, personalize_files,
                                           run_gateway_emulator)
    from kiloml.deploy.spec import board_flags, find_board
    from kiloml.workflow.deploy import project_spec
    from kiloml.workflow.federate import load_clients, read_message
    from kiloml.workflow.project import load_project

    root, clients = fleet
    p = load_project(root)
    spec = project_spec(p)
    head = find_head(spec.graph)
    c = load_clients(p, spec, head, clients)[5]
    pick = np.random.default_rng(5).choice(len(c.labels), 9, replace=False)
    xs, ys = c.inputs[pick], c.labels[pick]
    s = Settings(epochs=2, lr=0.05, max_samples=12)
    msg = bytes.fromhex(run["global_head_message"])
    bid, b = find_board("pico")
    got = run_gateway_emulator(personalize_files(head, "fz", s), head, "fz", xs, ys, msg,
                               str(b["core"]), board_flags(bid, str(b["core"])), prox_mu=1.5)
    start = read_message(head, msg, "test")
    feats = backbone_outputs(head, xs)
    assert got["rc"] == 0
    assert got["head_after"] == encode_head(*requantize_head(
        head, *train_head(start, feats, ys, s, prox_mu=1.5)))
