"""Federated learning across a fleet (``kiloml federate``): every sub-folder of a clients
folder is one device's private data (one person or speaker: non-IID). The devices fine-tune
the same trainable part as on-device personalization (the classifier head, through the
update's numpy twin ``kiloml.deploy.personalize.train_head``); a Flower server aggregates
them. Flower's simulation engine runs the clients on Ray: a private local Ray instance by
default (loopback, 2 CPUs, its own temp folder, shut down after), a cluster with
``address``.

What travels is what a board or its gateway would send: the head in the gateway byte
format (``encode_head``: int8 weights, int32 bias, the requantized multipliers and shifts,
float32 weight scales, CRC-32), down to the clients and back up. The server dequantizes the
clients' heads, takes their mean weighted by sample count (FedAvg; FedProx the same, with the
clients' proximal term) and requantizes it to int8 with the personalization scheme, so every
global model is an exportable int8 model. It is evaluated after every round on held-out
clients that never train, and compared with centralized fine-tuning of the same head on the
pooled training clients' data (same update code)."""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiloml.deploy.personalize import (F32, Head, Settings, backbone_outputs, decode_head,
                                       dequantize_head, encode_head, find_head,
                                       personalized_graph, requantize_head, run_model,
                                       train_head)
from kiloml.errors import KilomlError, UsageError

STRATEGIES = ("fedavg", "fedprox")


@dataclass(frozen=True)
class FederateSettings:
    """``rounds`` of federated training; each client runs ``epochs`` passes of the update
    (learning rate ``lr``) over its samples per round, in a seeded shuffled order; FedProx's
    proximal weight ``mu``."""

    rounds: int = 5
    strategy: str = "fedavg"
    epochs: int = 1
    lr: float = 0.02
    mu: float = 1.0
    seed: int = 0


@dataclass
class Client:
    """One device's data: int8 model inputs, their int8 head inputs (backbone outputs)."""

    name: str
    inputs: np.ndarray
    feats: np.ndarray
    labels: np.ndarray


# ---------------------------------------------------------------- the pieces (no Flower)

def head_with(head: Head, q: np.ndarray, ws: np.ndarray, qb: np.ndarray) -> Head:
    """``head`` with other int8 constants (the same input/output quantization)."""
    return dataclasses.replace(head, weights=np.asarray(q, np.int8),
                               wscale=np.asarray(ws, F32), bias=np.asarray(qb, np.int32))


def factory_message(head: Head) -> bytes:
    """The factory head (its int8 constants as they are) as a gateway head message."""
    from kiloml.ir.quant import quantize_multipliers

    real = np.float64(head.in_scale) * head.wscale.astype(np.float64) / np.float64(head.out_scale)
    mult, shift = quantize_multipliers(real)
    return encode_head(head.weights, head.wscale, head.bias, mult.astype(np.int32),
                       shift.astype(np.int32))


def read_message(head: Head, blob: bytes, who: str) -> Head:
    """A head message decoded and checked against the model's head shape."""
    q, ws, qb, _, _ = decode_head(blob)
    if q.shape != (head.units, head.depth):
        raise KilomlError(f"{who}: head message of {q.shape[0]}x{q.shape[1]}, the model's "
                          f"head is {head.units}x{head.depth}")
    return head_with(head, q, ws, qb)


def sample_order(n: int, seed: int, rnd: int, client: int) -> np.ndarray:
    """The order a client visits its samples in round ``rnd`` (seeded, reproducible)."""
    return np.random.default_rng([seed, rnd, client]).permutation(n)


def client_update(head: Head, blob: bytes, feats: np.ndarray, labels: np.ndarray,
                  s: FederateSettings, rnd: int, client: int, mu: float = 0.0) -> bytes:
    """One client's round: start from the received global head, run the update's twin
    (``mu`` > 0: FedProx's proximal term), requantize to int8, answer a head message."""
    start = read_message(head, blob, "client")
    order = sample_order(len(labels), s.seed, rnd, client)
    w, b = train_head(start, feats[order], labels[order],
                      Settings(epochs=s.epochs, lr=s.lr, max_samples=max(1, len(labels))),
                      prox_mu=mu)
    return encode_head(*requantize_head(head, w, b))


def aggregate(head: Head, blobs: list[bytes], counts: list[int]) -> bytes:
    """The server's step: every client's int8 head dequantized (w = q * ws, b = q_b *
    in_scale * ws), their mean weighted by sample count (float64, then float32), requantized
    to int8 by the personalization scheme; a head message."""
    total = float(sum(counts))
    if total <= 0:
        raise KilomlError("federate: no samples in the clients' answers")
    w_sum = np.zeros((head.units, head.depth), np.float64)
    b_sum = np.zeros(head.units, np.float64)
    for blob, n in zip(blobs, counts):
        w, b = dequantize_head(read_message(head, blob, "server"))
        w_sum += float(n) * w.astype(np.float64)
        b_sum += float(n) * b.astype(np.float64)
    w, b = (w_sum / total).astype(F32), (b_sum / total).astype(F32)
    return encode_head(*requantize_head(head, w, b))


def global_graph(head: Head, blob: bytes):
    """The int8 model with the head of a head message (what an export of it gives)."""
    h = read_message(head, blob, "global model")
    return personalized_graph(head, h.weights, h.wscale, h.bias)


def accuracy(head: Head, blob: bytes, clients: list[Client]) -> tuple[float, list[float]]:
    """Accuracy of the int8 model with the head of ``blob`` over all windows of ``clients``
    (reference interpreter), and per client. The backbone is the factory's, so the model runs
    from the clients' stored head inputs (its int8 backbone outputs): the head and the tail."""
    from kiloml.ir.graph import Graph

    g = global_graph(head, blob)
    top = Graph(g.tensors, g.nodes[head.node:], [g.nodes[head.node].inputs[0]],
                list(g.outputs), name=g.name + "_top")
    per, right, n = [], 0, 0
    for c in clients:
        pred = run_model(top, c.feats).argmax(axis=1)
        ok = int(np.sum(pred == c.labels))
        per.append(ok / len(c.labels))
        right, n = right + ok, n + len(c.labels)
    return right / n, per


def centralized(head: Head, clients: list[Client], s: FederateSettings) -> bytes:
    """Centralized fine-tuning for comparison: the same update on the pooled data of the
    training clients, seeded shuffled order, as many passes over every sample as federated
    training makes (rounds x epochs); requantized to int8."""
    feats = np.concatenate([c.feats for c in clients])
    labels = np.concatenate([c.labels for c in clients])
    order = sample_order(len(labels), s.seed, 0, len(clients) + 1)
    w, b = train_head(head, feats[order], labels[order],
                      Settings(epochs=s.rounds * s.epochs, lr=s.lr, max_samples=len(labels)))
    return encode_head(*requantize_head(head, w, b))


# ---------------------------------------------------------------- Flower on Ray

def check_address(address: str) -> None:
    """A ``host:port`` (or ``ray://host:port``) Ray address answers on TCP; KilomlError
    otherwise (Ray itself would retry for a minute)."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--address {address}: expected HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as e:
        raise KilomlError(f"--address {address}: no Ray cluster answers "
                          f"({e.strerror or e})") from None


def _ray_start(address: str | None, tmp: str) -> bool:
    """Start (or join) Ray; True when this call started it (and must shut it down)."""
    import logging

    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    quiet = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    if address is None:
        path = os.pathsep.join(p for p in sys.path if p)
        ray.init(address="local", num_cpus=2, _temp_dir=tmp, _node_ip_address="127.0.0.1",
                 runtime_env={"env_vars": {"PYTHONPATH": path}}, **quiet)
    else:
        import kiloml

        ray.init(address=address, runtime_env={"py_modules": [str(Path(kiloml.__file__).parent)]},
                 **quiet)
    return True


def run_flower(head: Head, train: list[Client], s: FederateSettings, evaluate,
               address: str | None = None) -> dict:
    """``s.rounds`` rounds of Flower (FedAvg or FedProx with the int8 aggregation) over the
    ``train`` clients in Flower's simulation engine on Ray. ``evaluate(round, blob)`` is the
    server-side evaluation of each global model (round 0: the factory one). Returns the final
    head message and the per-round bytes and sample counts."""
    import logging

    try:
        import ray
        from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict
        from flwr.clientapp import ClientApp
        from flwr.serverapp import ServerApp
        from flwr.serverapp.strategy import FedAvg, FedProx
        from flwr.simulation import run_simulation
    except ImportError as e:
        raise KilomlError(f"federate needs Flower and Ray (pip install 'kiloml[fleet]'): "
                          f"{e}") from None

    light = dataclasses.replace(head, graph=None)    # the clients need the constants only
    data = [(c.feats, c.labels) for c in train]

    def pack(blob: bytes) -> ArrayRecord:
        return ArrayRecord({"head": Array(np.frombuffer(blob, np.uint8).copy())})

    def unpack(rec: ArrayRecord) -> bytes:
        return np.asarray(rec["head"].numpy(), np.uint8).tobytes()

    client_app = ClientApp()

    @client_app.train()
    def _train(msg: Message, context) -> Message:
        cid = int(context.node_config["partition-id"])
        cfg = msg.content["config"]
        feats, labels = data[cid]
        blob = client_update(light, unpack(msg.content["arrays"]), feats, labels, s,
                             int(cfg["server-round"]), cid, float(cfg.get("proximal-mu", 0.0)))
        return Message(RecordDict({"arrays": pack(blob), "metrics": MetricRecord(
            {"num-examples": len(labels), "bytes-up": len(blob)})}), reply_to=msg)

    out: dict = {"rounds": []}
    base = FedProx if s.strategy == "fedprox" else FedAvg

    class Int8Mean(base):  # type: ignore[misc, valid-type]
        """The base strategy with the int8 head mean as its aggregation."""

        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            bad = [m for m in replies if m.has_error()]
            if bad:
                raise KilomlError(f"federate: a client failed in round {server_round}: "
                                  f"{bad[0].error.reason}")
            blobs = [unpack(m.content["arrays"]) for m in replies]
            counts = [int(m.content["metrics"]["num-examples"]) for m in replies]
            blob = aggregate(head, blobs, counts)
            out["rounds"].append({"round": server_round, "clients": len(blobs),
                                  "samples": sum(counts),
                                  "bytes_up_per_client": max(len(b) for b in blobs),
                                  "bytes_down_per_client": len(self._down)})
            self._down = blob
            return pack(blob), MetricRecord({"num-examples": sum(counts)})

    server_app = ServerApp()
    first = factory_message(head)

    @server_app.main()
    def _main(grid, context) -> None:
        kw = dict(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=len(train),
                  min_available_nodes=len(train))
        if s.strategy == "fedprox":
            kw["proximal_mu"] = float(s.mu)
        strategy = Int8Mean(**kw)
        strategy._down = first
        res = strategy.start(grid=grid, initial_arrays=pack(first), num_rounds=s.rounds,
                             evaluate_fn=lambda r, arrays: MetricRecord(
                                 {"accuracy": float(evaluate(r, unpack(arrays)))}))
        out["final"] = unpack(res.arrays)

    flwr_log = logging.getLogger("flwr")
    level = flwr_log.level
    flwr_log.setLevel(logging.ERROR)
    tmp = tempfile.mkdtemp(prefix="kml_ray_", dir="/tmp")
    out["ray_temp_dir"] = tmp      # removed below with the instance; reported for checks
    started = False
    try:
        started = _ray_start(address, tmp)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run_simulation(server_app=server_app, client_app=client_app,
                           num_supernodes=len(train), backend_name="ray",
                           backend_config={"client_resources": {"num_cpus": 1,
                                                                "num_gpus": 0.0}})
    finally:
        if started:
            ray.shutdown()
        flwr_log.setLevel(level)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    if "final" not in out or len(out["rounds"]) != s.rounds:
        raise KilomlError("federate: the Flower run ended early (no final model)")
    return out


# ---------------------------------------------------------------- the project workflow

def load_clients(project, spec, head: Head, clients_dir: Path) -> list[Client]:
    """Every sub-folder of ``clients_dir`` (name order) as one client: its recordings laid
    out like an import, windowed and run through the int8 backbone."""
    from kiloml.data.windowing import load_windows
    from kiloml.workflow.personalize import model_inputs
    from kiloml.workflow.train import import_elsewhere

    labels = list(spec.labels)
    out = []
    for d in sorted(p for p in clients_dir.iterdir() if p.is_dir()):
        if not any(f.is_file() for f in d.rglob("*")):
            raise KilomlError(f"--clients {clients_dir}: client folder {d.name!r} is empty")
        with tempfile.TemporaryDirectory(prefix="kiloml_federate_") as tmp:
            src = import_elsewhere(project, d, Path(tmp))
            frames, wins = load_windows(src.dataset, src.config.data, split="test")
        if not wins:
            raise KilomlError(f"--clients {clients_dir}: client folder {d.name!r} has no "
                              "windows")
        unknown = sorted({w.label for w in wins} - set(labels))
        if unknown:
            raise KilomlError(f"--clients {clients_dir}: client {d.name!r} has label "
                              f"{unknown[0]!r}, not one of the model's classes "
                              f"({', '.join(labels)})")
        x = model_inputs(spec, frames)
        y = np.array([labels.index(w.label) for w in wins])
        out.append(Client(d.name, x, backbone_outputs(head, x), y))
    return out


def split_holdout(names: list[str], holdout: str) -> tuple[list[int], list[int]]:
    """(training, held-out) client indices: ``holdout`` is a count (the last ones in name
    order) or comma-separated folder names."""
    h = str(holdout).strip()
    if h.isdigit():
        k = int(h)
        held = list(range(len(names) - k, len(names))) if k else []
    else:
        want = [n.strip() for n in h.split(",") if n.strip()]
        missing = [n for n in want if n not in names]
        if missing:
            raise KilomlError(f"--holdout: no client folder {missing[0]!r}")
        held = sorted(names.index(n) for n in want)
    if not held:
        raise UsageError("--holdout: at least one held-out client (they measure the result)")
    train = [i for i in range(len(names)) if i not in held]
    return train, held


def check_inputs(clients_dir, s: FederateSettings) -> Path:
    if s.strategy not in STRATEGIES:
        raise UsageError(f"--strategy {s.strategy}: one of {', '.join(STRATEGIES)}")
    if s.rounds < 1:
        raise UsageError(f"--rounds {s.rounds}: at least 1")
    if s.epochs < 1:
        raise UsageError(f"--epochs {s.epochs}: at least 1")
    d = Path(clients_dir)
    if not d.is_dir():
        raise KilomlError(f"--clients {d}: not a folder")
    return d


def federate_project(project, clients_dir, s: FederateSettings = FederateSettings(),
                     holdout: str = "2", address: str | None = None,
                     command: str = "kiloml federate") -> dict:
    """``kiloml federate``: federated fine-tuning of the project's classifier head over the
    client folders of ``clients_dir`` (``holdout`` of them never train and measure the
    result). Writes nothing into the project."""
    import time

    from kiloml.workflow.deploy import project_spec
    from kiloml.workflow.project import as_project

    d = check_inputs(clients_dir, s)
    if address is not None:
        check_address(address)
    names = sorted(p.name for p in d.iterdir() if p.is_dir())
    if len(names) < 3:
        raise KilomlError(f"--clients {d}: {len(names)} client folder(s); federated learning "
                          "needs at least 2 training clients and 1 held out")
    train_i, held_i = split_holdout(names, holdout)
    if len(train_i) < 2:
        raise KilomlError(f"--clients {d}: {len(train_i)} training client(s) after holding "
                          f"out {len(held_i)}; at least 2 are needed")
    p = as_project(project)
    spec = project_spec(p, None, command=command)
    head = find_head(spec.graph)
    clients = load_clients(p, spec, head, d)
    train = [clients[i] for i in train_i]
    held = [clients[i] for i in held_i]

    history: dict[int, float] = {}

    def evaluate(rnd: int, blob: bytes) -> float:
        history[rnd], _ = accuracy(head, blob, held)
        return history[rnd]

    t0 = time.time()
    fl = run_flower(head, train, s, evaluate, address)
    wall = time.time() - t0
    cen = centralized(head, train, s)
    acc_cen, per_cen = accuracy(head, cen, held)
    acc_fin, per_fin = accuracy(head, fl["final"], held)
    acc_0, per_0 = accuracy(head, factory_message(head), held)
    rounds = [{"round": 0, "held_out_accuracy": round(history.get(0, acc_0), 6)}]
    for r in fl["rounds"]:
        rounds.append({**r, "held_out_accuracy": round(history[r["round"]], 6)})
    return {
        "strategy": s.strategy, "rounds": s.rounds, "local_epochs": s.epochs, "lr": s.lr,
        "proximal_mu": s.mu if s.strategy == "fedprox" else 0.0,
        "training_clients": [c.name for c in train],
        "held_out_clients": [c.name for c in held],
        "training_samples": int(sum(len(c.labels) for c in train)),
        "held_out_samples": int(sum(len(c.labels) for c in held)),
        "trainable": f"classifier head {head.units}x{head.depth} (int8 weights, int32 bias)",
        "ray": address or "local (127.0.0.1, 2 CPUs)",
        "ray_temp_dir": fl["ray_temp_dir"],
        "per_round": rounds,
        "accuracy_start": round(acc_0, 6),
        "accuracy_federated": round(acc_fin, 6),
        "accuracy_centralized": round(acc_cen, 6),
        "federated_minus_centralized": round(acc_fin - acc_cen, 6),
        "per_client": [{"client": c.name, "start": round(a, 6), "federated": round(b, 6),
                        "centralized": round(e, 6)}
                       for c, a, b, e in zip(held, per_0, per_fin, per_cen)],
        # the trainable part: int8 weights, int32 bias, float32 weight scales; the gateway
        # message adds its header, the derived multipliers and shifts, and the CRC-32
        "bytes_per_client_per_round": {
            "trainable_part": head.units * head.depth + 8 * head.units,
            "message": max(max(r["bytes_up_per_client"], r["bytes_down_per_client"])
                           for r in fl["rounds"])},
        "federated_s": round(wall, 1),
        # the global head as the gateway head message a phone or gateway relays to the boards
        "global_head_message": fl["final"].hex(),
    }
