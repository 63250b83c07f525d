"""On-device personalization (kiloml.deploy.personalize): the generated C update equals its
numpy twin byte for byte on the host (under ASan/UBSan) and in the emulator (Cortex-M4 with
its FPU, Cortex-M0+ in software float), inference with the RAM slot equals the reference
interpreter on the personalized graph, and bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest

from projhelp import ran_wand_project

from kiloml.deploy.personalize import (Settings, check_samples, find_head, personalize,
                                       personalize_files, personalized_graph, run_model,
                                       run_update_emulator, run_update_host)
from kiloml.deploy.spec import board_flags, find_board
from kiloml.errors import KilomlError
from kiloml.ir.ops import REGISTRY

CASES = [Settings(epochs=0, lr=0.05, max_samples=16), Settings(epochs=1, lr=0.05, max_samples=16),
         Settings(epochs=7, lr=0.5, max_samples=16)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root, _ = ran_wand_project(tmp_path_factory.mktemp("pz"))
    return root


@pytest.fixture(scope="module")
def person(trained):
    """The trained wand project's model head and the int8 model inputs of its test person."""
    from kiloml.data.windowing import load_windows
    from kiloml.workflow.deploy import project_spec
    from kiloml.workflow.personalize import model_inputs
    from kiloml.workflow.project import load_project

    p = load_project(trained)
    spec = project_spec(p)
    frames, wins = load_windows(p.dataset, p.config.data, split="test")
    x = model_inputs(spec, frames)
    y = np.array([list(spec.labels).index(w.label) for w in wins])
    return spec, find_head(spec.graph), x, y


def _samples(x, y, rng):
    pick = np.concatenate([rng.choice(np.flatnonzero(y == c), 4, replace=False)
                           for c in np.unique(y)])
    noise = rng.integers(-128, 128, (4, x.shape[1])).astype(np.int8)  # off-distribution too
    return (np.concatenate([x[pick], noise]),
            np.concatenate([y[pick], rng.integers(0, y.max() + 1, 4)]))


@pytest.mark.parametrize("case", range(len(CASES)))
def test_host_c_update_equals_the_twin_and_the_slot_infers_like_the_exported_graph(person,
                                                                                  case):
    spec, head, x, y = person
    s = CASES[case]
    xs, ys = _samples(x, y, np.random.default_rng(case))
    q, ws, qb, mult, shift = personalize(head, xs, ys, s)
    bundle = personalize_files(head, "pz", s)
    got = run_update_host(bundle, head, "pz", xs, ys, eval_inputs=x, sanitize=True)
    assert got.weights.tobytes() == q.tobytes()
    assert got.bias.tobytes() == qb.tobytes()
    if s.epochs:
        assert not np.array_equal(q, head.weights)      # the update changed the head
    g = personalized_graph(head, q, ws, qb)
    assert np.array_equal(got.outputs, run_model(g, x))
    # the multipliers the twin derived are the ones the FULLY_CONNECTED op prepares
    p = REGISTRY["FULLY_CONNECTED"].prepare(g, g.nodes[head.node])
    assert p.mult.tolist() == mult.tolist() and p.shift.tolist() == shift.tolist()


@pytest.mark.parametrize("board", ["nano33ble", "pico"])
def test_emulator_c_update_equals_the_twin_within_the_ram_budget(person, board):
    spec, head, x, y = person
    s = CASES[2]
    xs, ys = _samples(x, y, np.random.default_rng(7))
    q, ws, qb, _, _ = personalize(head, xs, ys, s)
    bundle = personalize_files(head, "pz", s)
    bid, b = find_board(board)
    got = run_update_emulator(bundle, head, "pz", xs, ys, str(b["core"]),
                              board_flags(bid, str(b["core"])))
    assert got.weights.tobytes() == q.tobytes()
    assert got.bias.tobytes() == qb.tobytes()
    assert 0 < got.stack_bytes < 4096 and got.cycles > got.instructions > 0


def test_reset_restores_the_factory_head_and_an_empty_store_leaves_the_slot(person, tmp_path):
    """The host harness calls reset first: with zero epochs the update only requantizes the
    factory head, whose inference equals the factory graph on every window."""
    spec, head, x, y = person
    s = CASES[0]
    bundle = personalize_files(head, "pz", s)
    got = run_update_host(bundle, head, "pz", x[:2], y[:2], eval_inputs=x)
    assert np.array_equal(got.outputs.argmax(axis=1), run_model(head.graph, x).argmax(axis=1))
    src = bundle.files["pz_personalize.c"]
    assert "static const int8_t pz_factory_w[" in src and "static int8_t pz_slot_w[" in src


def test_bad_samples_are_refused(person):
    from kiloml.workflow.personalize import pick_shots

    spec, head, x, y = person
    with pytest.raises(KilomlError, match="outside"):
        check_samples(np.array([0, head.units]), head.units, Settings())
    with pytest.raises(KilomlError, match="no samples"):
        check_samples(np.array([], int), head.units, Settings())
    with pytest.raises(KilomlError, match="needs at least"):
        pick_shots(y, int((y == 0).sum()), head.units, list(spec.labels))


def test_opt_in_c_package_holds_the_update_and_reports_its_memory(person, tmp_path):
    import dataclasses
    import json

    from kiloml.deploy import deploy_c

    spec, head, x, y = person
    plain = deploy_c(spec, tmp_path / "plain")
    assert not (tmp_path / "plain" / "personalize").exists() and plain is not None
    deploy_c(dataclasses.replace(spec, personalize=Settings(epochs=3)), tmp_path / "pz")
    meta = json.loads(next((tmp_path / "pz").glob("*.json")).read_text())
    rep = meta["personalize"]
    name = meta["name"]
    assert (tmp_path / "pz" / "personalize" / f"{name}_personalize.c").is_file()
    assert rep["head_units"] == head.units and rep["head_depth"] == head.depth
    assert rep["budget_bytes"] == 2 * rep["model_arena_bytes"]
    assert rep["working_bytes"] == 4 * (head.units * head.depth + 2 * head.units) \
        + head.depth + head.units


def _person_dir(tmp_path, labels=("ring", "wing"), who="dengyl"):
    from projhelp import WAND

    d = tmp_path / "person"
    for lab in labels:
        (d / lab).mkdir(parents=True)
        for f in (WAND / lab).glob(f"*{who}*"):
            (d / lab / f.name).write_bytes(f.read_bytes())
    return d


def test_cli_personalizes_in_the_emulator_and_reports(trained, tmp_path):
    import json

    from projhelp import kiloml

    root = trained
    model = (root / "model" / "model.tflite").read_bytes()
    r = kiloml("personalize", "--data", _person_dir(tmp_path), "--shots", "3", "--json",
               cwd=root)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["c_equals_twin"] is True and rep["samples"] == 6
    assert 0 <= rep["accuracy_before"] <= 1 and 0 <= rep["accuracy_after"] <= 1
    assert rep["update_cycles"] > 0 and rep["update_stack_bytes"] > 0 and rep["energy_uj"] > 0
    assert (root / "model" / "model.tflite").read_bytes() == model   # factory untouched


@pytest.mark.parametrize("kind", ["empty", "unknown", "few"])
def test_cli_bad_input_is_one_line_and_exit_1(trained, tmp_path, kind):
    from projhelp import kiloml

    root = trained
    model = (root / "model" / "model.tflite").read_bytes()
    if kind == "empty":
        d, shots, msg = tmp_path / "empty", "3", "no recordings"
        d.mkdir()
    elif kind == "unknown":
        d, shots, msg = _person_dir(tmp_path, ("ring", "slope")), "3", "'slope' is not one"
    else:
        d, shots, msg = _person_dir(tmp_path), "60", "needs at least"
    if kind == "few":   # room in the store, too few windows of the class
        (root / "kiloml.toml").write_text((root / "kiloml.toml").read_text()
                                          + "\n[personalize]\nmax_samples = 200\n")
    try:
        r = kiloml("personalize", "--data", d, "--shots", shots, cwd=root)
    finally:
        text = (root / "kiloml.toml").read_text()
        (root / "kiloml.toml").write_text(text.split("\n[personalize]")[0])
    assert r.returncode == 1, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and msg in r.stderr, r.stderr
    assert (root / "model" / "model.tflite").read_bytes() == model


def test_gateway_messages_round_trip_and_refuse_corruption(person):
    from kiloml.deploy.personalize import (backbone_outputs, decode_head, decode_samples,
                                           encode_head, encode_samples)

    spec, head, x, y = person
    xs, ys = _samples(x, y, np.random.default_rng(3))
    feats = backbone_outputs(head, xs)
    msg = encode_samples(feats, ys, head.units)
    assert len(msg) == 12 + len(ys) * (head.depth + 1) + 4
    f2, y2, units = decode_samples(msg)
    assert np.array_equal(f2, feats) and np.array_equal(y2, ys) and units == head.units
    # the gateway's samples give the update the board computes
    s = CASES[2]
    from kiloml.deploy.personalize import requantize_head, train_head

    upd = requantize_head(head, *train_head(head, f2, y2, s))
    want = personalize(head, xs, ys, s)
    assert all(np.array_equal(a, b) for a, b in zip(upd, want))
    blob = encode_head(*[want[i] for i in (0, 1, 2, 3, 4)])
    got = decode_head(blob)
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(got, want))
    bad = bytearray(blob)
    bad[20] ^= 1
    for broken, msg_ in ((bytes(bad), "checksum"), (blob[:10], "shorter"),
                         (b"XXXX" + blob[4:], "magic")):
        with pytest.raises(KilomlError, match=msg_):
            decode_head(broken)
    with pytest.raises(KilomlError, match="kind"):
        decode_samples(blob)
