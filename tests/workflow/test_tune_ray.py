"""``kiloml tune --backend ray``: the same trials as the local backend for the same seed and
trial count, on a Ray instance this test starts on loopback (``--address``) and on the
private instance kiloml starts itself, the study resumed across the two; an address where no
cluster answers is one line."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile

import pytest

from projhelp import edit, kiloml, wand_project

# a one-machine Ray: every server on 127.0.0.1 (read when Ray is first imported); the kiloml
# processes this test starts inherit it
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # a FutureWarning otherwise
ray = pytest.importorskip("ray", reason="the fleet extra (ray[tune]) is not installed")

SPACE = """
[tune.space]
"model.params.hidden" = [[8], [16], [32, 16]]
"dsp.params.fft_length" = [16, 32]
"""


def _imported(root_dir):
    root = wand_project(root_dir, epochs=3)
    r = kiloml("run", "-q", "--until", "import", cwd=root)
    assert r.returncode == 0, r.stderr
    edit(root / "kiloml.toml", "min_epochs = 2\n", "epochs = 3\nmin_epochs = 1\n")
    (root / "kiloml.toml").write_text((root / "kiloml.toml").read_text() + SPACE)
    return root


def _same(rows: list[dict]) -> list[dict]:
    """A trial's record without its wall-clock time."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_ray_backend_gives_the_local_backends_trials(tmp_path):
    local = _imported(tmp_path / "local")
    r = kiloml("tune", "--trials", "4", "--json", cwd=local)
    assert r.returncode == 0, r.stderr
    want = json.loads(r.stdout)
    assert len(want["trials"]) == 4 and {t["state"] for t in want["trials"]} & {"complete"}

    other = _imported(tmp_path / "ray")
    # the reference (the project's own settings) is per project: reuse it, it is not a trial
    (other / ".kiloml" / "tune").mkdir(parents=True)
    for f in (local / ".kiloml" / "tune").glob("defaults-*.json"):
        shutil.copy(f, other / ".kiloml" / "tune" / f.name)
    # a Ray "cluster" on loopback, started and stopped here: three trials on it
    tmp = tempfile.mkdtemp(prefix="kt-ray-")  # short: Ray's socket paths
    try:
        ray.init(address="local", include_dashboard=False, num_cpus=2,
                 _temp_dir=tmp, log_to_driver=False,
                 object_store_memory=100 * 2 ** 20)
        gcs = ray.get_runtime_context().gcs_address
        assert gcs.startswith("127.0.0.1:"), gcs
        r = kiloml("tune", "--backend", "ray", "--address", gcs, "--trials", "3", "--json",
                   cwd=other)
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout)
    assert first["study"] == want["study"]
    assert _same(first["trials"]) == _same(want["trials"][:3])
    # the fourth on kiloml's own private Ray instance, resuming the same study
    r = kiloml("tune", "--backend", "ray", "--trials", "4", "--json", cwd=other)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert _same(got["trials"]) == _same(want["trials"])
    assert got["pareto"] == want["pareto"]
    assert "Traceback" not in r.stderr


def test_unreachable_cluster_is_one_line(tmp_path):
    root = wand_project(tmp_path)
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = kiloml("tune", "--backend", "ray", "--address", f"127.0.0.1:{port}", cwd=root)
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--address 127.0.0.1:{port}: no Ray cluster answers" in \
        lines[0], r.stderr
    assert not (root / ".kiloml" / "tune").exists()
    for args, where in ((["--address", "nohost"], "expected HOST:PORT"),
                        (["--address", "ray://h:10001"], "not supported"),
                        ([], "--address is the Ray cluster's")):
        backend = ["--backend", "ray"] if args else ["--address", "h:1"]
        r = kiloml("tune", *backend, *args, cwd=root)
        assert r.returncode == 2 and where in r.stderr, r.stderr
