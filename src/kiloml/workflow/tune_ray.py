"""``kiloml tune --backend ray``: the same trials as Ray Tune trials.

The search stays the Optuna study of kiloml.workflow.tune (SQLite in the project): a Ray Tune
``Searcher`` asks the study for each trial's values (``next_trial``), a Ray worker runs the
trial (``run_trial``, the same function as the local backend) and the searcher tells the study
its record. So a Ray search resumes a local one and the other way round, and the Pareto front,
``--show`` and ``--apply`` are the local backend's code.

Trials run one at a time (``max_concurrent=1``): the sampler (multivariate TPE) and the rung
pruner depend on every earlier trial, so one trial at a time is what makes the Ray backend give
exactly the local backend's trials for the same seed and trial count. The worker does not need
the study: the rungs earlier trials reached travel with the trial's configuration, the rungs it
reaches come back with its record. What Ray adds is where a trial runs: a cluster's node with
the project's directory at the same path (a shared file system) and kiloml installed.

Without ``--address`` a private Ray instance is started for the search (loopback only, its own
temporary directory, no dashboard, the machine's CPUs) and shut down after it. With
``--address HOST:PORT`` (the GCS address ``ray start --head`` prints) the search joins that
cluster, from one of its nodes; an address where nothing answers is one clear line before
anything runs.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from kiloml.errors import UsageError
from kiloml.workflow.project import Project
from kiloml.workflow.tune import (Limits, Search, Stopper, TuneError, _one_line, _rung_pruner,
                                  _tell, next_trial, run_trial)

CONNECT_TIMEOUT_S = 5.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")
SINGLE_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray binds to 127.0.0.1 only
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0",  # no usage report, no prompt
           "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",  # (a FutureWarning otherwise)
           "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # no CSV/JSON/TensorBoard result files
           "RAY_AIR_NEW_OUTPUT": "0"}


def _host_port(address: str) -> tuple[str, int]:
    if address.startswith("ray://"):
        raise UsageError(f"--address {address}: give the cluster's GCS address HOST:PORT "
                         "(as `ray start --head` prints it) and run kiloml on a node of the "
                         "cluster; Ray Client (ray://) addresses are not supported")
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--address {address}: expected HOST:PORT (e.g. 10.0.0.5:6379)")
    return host.strip("[]"), int(port)


def check_address(address: Optional[str]) -> None:
    """Fail with one line unless something listens at the cluster address (no address: the
    private local instance, nothing to check)."""
    if address is None:
        return
    host, port = _host_port(address)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        reason = e.strerror or type(e).__name__.replace("Error", " error").lower()
        raise TuneError(f"--address {address}: no Ray cluster answers there ({reason})") \
            from None


class _RungStore:
    """The ``user_attrs``/``set_user_attr`` the rung pruner needs, in a worker without the
    study: the earlier trials' rungs in, this trial's rungs out (``added``)."""

    def __init__(self, attrs: dict) -> None:
        self.user_attrs = dict(attrs)
        self.added: dict[str, Any] = {}

    def set_user_attr(self, key: str, value: Any) -> None:
        self.user_attrs[key] = value
        self.added[key] = value


def _run_in_worker(config: dict) -> None:
    """The Ray Tune trainable: one trial, its record reported as JSON text (Ray flattens
    nested results)."""
    from ray import tune as ray_tune

    torch.set_num_threads(config["threads"])  # the driver's: the same float arithmetic
    store = _RungStore(config["rungs"])
    s = Search(Project.load(config["root"]), [], Limits(**config["limits"]), config["epochs"],
               tuple(config["rung_epochs"]), config["reduction"], 0)
    rec = run_trial(s.project, config["params"], Path(config["scratch"]),
                    Path(config["cache"]), s.limits, s.epochs,
                    _rung_pruner(store, s, config["number"]), s.rung_epochs)
    ray_tune.report({"record": json.dumps(rec), "rungs": json.dumps(store.added)})


def _searcher(s: Search, study, stop: Stopper, log_fn: Callable[[str], None]):
    from ray.tune.search import Searcher

    class StudySearcher(Searcher):
        """Ray Tune's view of the Optuna study: suggest = ask, complete = tell."""

        def __init__(self) -> None:
            super().__init__()
            self.live: dict[str, Any] = {}

        def __reduce__(self):
            # Tuner pickles its configuration into its (throw-away) experiment folder; the
            # study's state is in its SQLite file, not in this object
            return (_unusable, ())

        def suggest(self, trial_id: str):
            while not stop():
                trial, params, rec = next_trial(s, study)
                if rec is not None:  # values tried before: their record, no Ray trial
                    _tell(study, trial, rec)
                    log_fn(f"trial {trial.number}: {_one_line(rec)}")
                    continue
                self.live[trial_id] = (trial, params)
                return {"root": str(s.project.root), "params": params,
                        "number": trial.number,
                        "scratch": str(s.folder / f"trial-{trial.number}"),
                        "cache": str(s.folder / "cache"), "limits": dict(s.limits.__dict__),
                        "epochs": s.epochs, "rung_epochs": list(s.rung_epochs),
                        "reduction": s.reduction, "threads": torch.get_num_threads(),
                        "rungs": {k: v for k, v in study.user_attrs.items()
                                  if k.startswith("rung")}}
            return Searcher.FINISHED

        def on_trial_complete(self, trial_id: str, result: Optional[dict] = None,
                              error: bool = False) -> None:
            trial, params = self.live.pop(trial_id)
            if error or not result or "record" not in result:
                rec = {"params": params, "state": "failed",
                       "error": "the Ray worker failed (see Ray's log)"}
            else:
                rec = json.loads(result["record"])
                for k, v in json.loads(result["rungs"]).items():
                    study.set_user_attr(k, v)
            _tell(study, trial, rec)
            log_fn(f"trial {trial.number}: {_one_line(rec)}")

    return StudySearcher()


def _unusable():
    """What a pickled searcher becomes: nothing (a Ray search is resumed from the study)."""
    return None


def run_on_ray(s: Search, study, stop: Stopper, address: Optional[str],
               log_fn: Callable[[str], None]) -> None:
    """Run the study's remaining trials as Ray Tune trials, one at a time."""
    for k, v in RAY_ENV.items():
        os.environ.setdefault(k, v)
    if address is None or _host_port(address)[0] in LOOPBACK:
        # a one-machine Ray: every server on 127.0.0.1, none on the network (Ray reads this
        # when it is first imported)
        os.environ.setdefault(SINGLE_NODE_ENV, "0")
    import ray
    from ray import tune as ray_tune
    from ray.tune.search import ConcurrencyLimiter

    tmp = Path(tempfile.mkdtemp(prefix="kiloml-ray-"))  # short: Ray's socket paths
    try:
        kw: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False,
                                  logging_level=logging.ERROR)
        if address is None:
            kw.update(address="local", _temp_dir=str(tmp / "ray"),
                      num_cpus=len(os.sched_getaffinity(0)),
                      object_store_memory=100 * 2 ** 20)
        else:
            kw.update(address=address)
        try:
            ray.init(**kw)
        except Exception as e:  # Ray raises several types (ConnectionError, RuntimeError...)
            where = f"--address {address}" if address else "the local Ray instance"
            line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise TuneError(f"{where}: Ray did not start: {line}") from None
        trainable = ray_tune.with_resources(_run_in_worker, {"cpu": 1})
        tuner = ray_tune.Tuner(
            trainable,
            tune_config=ray_tune.TuneConfig(
                search_alg=ConcurrencyLimiter(_searcher(s, study, stop, log_fn), 1),
                num_samples=-1),
            run_config=ray_tune.RunConfig(name=s.name, storage_path=str(tmp / "results"),
                                          verbose=0))
        tuner.fit()
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["check_address", "run_on_ray"]
