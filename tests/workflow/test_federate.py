"""Federated learning (kiloml federate): a factory model trained on 3 magic_wand people, then
8 people as clients (one person each, non-IID), 2 of them held out (in neither the factory
training nor the federated one). One Flower run on a private local Ray instance, started and
stopped by the command; its global model is recomputed independently of Flower and Ray from
the clients' update and the int8 mean; bad input is refused in one line."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from fedhelp import HELD_OUT, make_fleet
from projhelp import WAND, kiloml

from kiloml.deploy.personalize import (Settings, decode_head, dequantize_head, encode_head,
                                       find_head, requantize_head, train_head)
from kiloml.errors import KilomlError


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    return make_fleet(tmp_path_factory.mktemp("fed"))


def _ray_processes(tag: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if tag in cmd:
                found.append(cmd[:120])
    return found


@pytest.fixture(scope="module")
def run(fleet):
    root, clients = fleet
    r = kiloml("federate", "--clients", clients, "--strategy", "fedprox", "--rounds", "5",
               "--json", cwd=root)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    # the private Ray instance is gone: its temp folder and every process started in it
    # (this run's own folder: under xdist another worker may be running this fixture too)
    tmp = out["ray_temp_dir"]
    assert Path(tmp).name.startswith("kml_ray_") and Path(tmp).parent == Path("/tmp")
    assert not Path(tmp).exists()
    assert not _ray_processes(tmp)
    return out


def test_federated_run_improves_held_out_clients_within_two_points_of_centralized(run):
    assert run["held_out_clients"] == HELD_OUT
    assert len(run["training_clients"]) == 6 and not set(HELD_OUT) & set(run["training_clients"])
    assert [r["round"] for r in run["per_round"]] == [0, 1, 2, 3, 4, 5]
    assert all(r["clients"] == 6 for r in run["per_round"][1:])
    # the trainable part: a 3x32 int8 head, int32 bias, float32 scales; its gateway message
    assert run["bytes_per_client_per_round"] == {"trainable_part": 3 * 32 + 8 * 3,
                                                 "message": 12 + 3 * 32 + 16 * 3 + 4}
    start, fed, cen = (run[k] for k in ("accuracy_start", "accuracy_federated",
                                        "accuracy_centralized"))
    assert run["per_round"][0]["held_out_accuracy"] == start
    assert run["per_round"][-1]["held_out_accuracy"] == fed
    assert fed > start, run["per_round"]
    assert fed >= cen - 0.02, (fed, cen)


def test_the_global_model_equals_the_rounds_recomputed_without_flower(fleet, run):
    """An independent replay of FedProx: every client's update by the twin in its seeded
    order, the sample-weighted mean of the dequantized heads in float64, the requantization;
    the Flower/Ray run's global head message is the same byte for byte."""
    from kiloml.workflow.deploy import project_spec
    from kiloml.workflow.federate import FederateSettings, load_clients, sample_order
    from kiloml.workflow.project import load_project

    root, clients = fleet
    p = load_project(root)
    spec = project_spec(p)
    head = find_head(spec.graph)
    train = [c for c in load_clients(p, spec, head, clients) if c.name not in HELD_OUT]
    assert sum(len(c.labels) for c in train) == run["training_samples"]
    s = FederateSettings(strategy="fedprox")
    import dataclasses

    q, ws, qb = head.weights, head.wscale, head.bias      # the factory head
    for rnd in range(1, 6):
        start = dataclasses.replace(head, weights=q, wscale=ws, bias=qb)
        ws_sum, bs_sum, n = 0.0, 0.0, 0
        for i, c in enumerate(train):
            o = sample_order(len(c.labels), s.seed, rnd, i)
            cw, cb = train_head(start, c.feats[o], c.labels[o],
                                Settings(epochs=s.epochs, lr=s.lr, max_samples=999),
                                prox_mu=s.mu)
            cq, cws, cqb, _, _ = requantize_head(head, cw, cb)
            # the scheme's dequantization (float32): w = q * ws, b = q_b * (in_scale * ws)
            dw = cq.astype(np.float32) * cws[:, None]
            db = cqb.astype(np.float32) * (head.in_scale * cws)
            ws_sum = ws_sum + len(c.labels) * dw.astype(np.float64)
            bs_sum = bs_sum + len(c.labels) * db.astype(np.float64)
            n += len(c.labels)
        q, ws, qb, _, _ = requantize_head(head, (ws_sum / n).astype(np.float32),
                                          (bs_sum / n).astype(np.float32))
    got = decode_head(bytes.fromhex(run["global_head_message"]))
    assert got[0].tobytes() == q.tobytes() and got[2].tobytes() == qb.tobytes()
    assert got[1].tobytes() == ws.tobytes()
    assert not np.array_equal(q, head.weights)


def test_int8_mean_is_the_weighted_mean_within_one_quantization_step():
    from kiloml.workflow.federate import aggregate

    rng = np.random.default_rng(0)
    U, D = 3, 5

    from kiloml.deploy.personalize import Head

    H = Head(None, 0, U, D, np.zeros((U, D), np.int8), np.ones(U, np.float32),
             np.zeros(U, np.int32), np.float32(0.05), 0, np.float32(0.1), 0, -128, 127)
    ws_all, heads = [], []
    for k in range(3):
        w = rng.normal(0, 1, (U, D)).astype(np.float32)
        b = rng.normal(0, 1, U).astype(np.float32)
        q, ws, qb, m, sh = requantize_head(H, w, b)
        heads.append((encode_head(q, ws, qb, m, sh), q.astype(np.float64) * ws[:, None],
                      qb.astype(np.float64) * (np.float64(H.in_scale) * ws)))
        ws_all.append(ws)
    counts = [10, 30, 60]
    q, ws, qb, _, _ = decode_head(aggregate(H, [h[0] for h in heads], counts))
    want_w = sum(n * h[1] for n, h in zip(counts, heads)) / 100
    want_b = sum(n * h[2] for n, h in zip(counts, heads)) / 100
    assert np.all(np.abs(q * ws[:, None].astype(np.float64) - want_w)
                  <= ws[:, None] * 0.5 + 1e-6)
    assert np.all(np.abs(qb * (np.float64(H.in_scale) * ws) - want_b) <= H.in_scale * ws)
    # one client: its head comes back unchanged
    one = decode_head(aggregate(H, [heads[0][0]], [7]))
    assert np.array_equal(one[0], decode_head(heads[0][0])[0])
    with pytest.raises(KilomlError, match="checksum"):
        bad = bytearray(heads[0][0])
        bad[14] ^= 4
        aggregate(H, [bytes(bad)], [1])


def test_proximal_term_keeps_the_head_near_its_start_and_zero_is_the_plain_update(fleet):
    from kiloml.workflow.deploy import project_spec
    from kiloml.workflow.federate import load_clients
    from kiloml.workflow.project import load_project

    root, clients = fleet
    p = load_project(root)
    spec = project_spec(p)
    head = find_head(spec.graph)
    c = load_clients(p, spec, head, clients)[3]
    s = Settings(epochs=2, lr=0.05, max_samples=999)
    w0, b0 = dequantize_head(head)
    plain = train_head(head, c.feats, c.labels, s)
    zero = train_head(head, c.feats, c.labels, s, prox_mu=0.0)
    assert plain[0].tobytes() == zero[0].tobytes() and plain[1].tobytes() == zero[1].tobytes()
    prox = train_head(head, c.feats, c.labels, s, prox_mu=5.0)
    assert np.linalg.norm(prox[0] - w0) < 0.7 * np.linalg.norm(plain[0] - w0)


@pytest.mark.parametrize("case", ["missing", "one", "empty", "unknown", "strategy",
                                  "address"])
def test_bad_input_one_line(fleet, tmp_path, case):
    root, clients = fleet
    d, extra, code, msg = clients, [], 1, ""
    if case == "missing":
        d, msg = tmp_path / "nope", "not a folder"
    elif case == "one":
        d = tmp_path / "c"
        shutil.copytree(clients / "hyw", d / "hyw")
        msg = "at least 2 training clients"
    elif case == "empty":
        d = tmp_path / "c"
        for n in ("hyw", "lsj", "shiyun"):
            shutil.copytree(clients / n, d / n)
        (d / "lsj2").mkdir()
        msg = "'lsj2' is empty"
    elif case == "unknown":
        d = tmp_path / "c"
        for n in ("hyw", "lsj", "pengxl", "shiyun"):
            shutil.copytree(clients / n, d / n)
        shutil.copytree(WAND / "negative", d / "lsj" / "negative")
        msg = "'negative', not one of the model's classes"
    elif case == "strategy":
        extra, code, msg = ["--strategy", "fedsgd"], 2, "one of fedavg, fedprox"
    else:
        extra, msg = ["--address", "127.0.0.1:9"], "no Ray cluster answers"
    r = kiloml("federate", "--clients", d, *extra, cwd=root)
    assert r.returncode == code, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and msg in r.stderr, r.stderr
    assert r.stdout == ""


def test_accuracy_from_head_inputs_equals_the_whole_int8_model(fleet, run):
    from kiloml.deploy.personalize import run_model
    from kiloml.workflow.deploy import project_spec
    from kiloml.workflow.federate import accuracy, global_graph, load_clients
    from kiloml.workflow.project import load_project

    root, clients = fleet
    p = load_project(root)
    spec = project_spec(p)
    head = find_head(spec.graph)
    held = [c for c in load_clients(p, spec, head, clients) if c.name in HELD_OUT]
    blob = bytes.fromhex(run["global_head_message"])
    acc, per = accuracy(head, blob, held)
    g = global_graph(head, blob)      # the whole exported int8 model, raw model inputs in
    want = [float(np.mean(run_model(g, c.inputs).argmax(axis=1) == c.labels)) for c in held]
    assert per == want and round(acc, 6) == run["accuracy_federated"]
