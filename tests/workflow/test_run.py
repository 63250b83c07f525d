"""``kiloml run``: steps in order, content-hash caching, exactly the dependent steps re-run
after a change, a failing step stops the run and keeps earlier results, bad usage."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from projhelp import WAND, edit, kiloml, statuses, wand_project


@pytest.fixture()
def project(tmp_path) -> Path:
    return wand_project(tmp_path)


def test_run_caches_and_reruns_exactly_the_dependent_steps(project):
    r = kiloml("run", "--json", "-q", cwd=project)
    assert r.returncode == 0, r.stderr
    assert statuses(r) == {s: "ran" for s in ("import", "features", "train", "compile",
                                              "profile", "deploy", "verify",
                                              "report")}
    assert (project / "model" / "model.tflite").is_file()
    prof = json.loads((project / "build" / "profile.json").read_text())["boards"][0]
    assert prof["board"] == "nano33ble" and prof["output_matches_reference"] is True
    assert prof["dsp"]["output_matches_host"] is True
    # nothing changed: everything cached
    r = kiloml("run", "--json", "-q", cwd=project)
    assert r.returncode == 0 and set(statuses(r).values()) == {"cached"}, r.stdout
    # a DSP parameter: features and everything after it, not the import
    edit(project / "kiloml.toml", "band_edges_hz = [0, 1, 2, 4, 8, 12]",
         "band_edges_hz = [0, 1, 3, 6, 12]")
    r = kiloml("run", "--json", "-q", cwd=project)
    assert r.returncode == 0, r.stderr
    assert statuses(r) == {"import": "cached", "features": "ran", "train": "ran",
                           "compile": "ran", "profile": "ran", "deploy": "ran", "verify": "ran",
                           "report": "ran"}
    # another board: compile and profile only (same model bytes)
    edit(project / "kiloml.toml", 'name = "nano33ble"', 'name = "pico"')
    r = kiloml("run", "--json", "-q", cwd=project)
    assert statuses(r) == {"import": "cached", "features": "cached", "train": "cached",
                           "compile": "ran", "profile": "ran", "deploy": "ran", "verify": "ran",
                           "report": "ran"}
    prof = json.loads((project / "build" / "profile.json").read_text())["boards"]
    assert [b["board"] for b in prof] == ["pico"]
    assert json.loads((project / "build" / "verify.json").read_text())["board"] == "pico"
    # only the Arduino library: deploy and verify again (verify builds the C it checks)
    edit(project / "kiloml.toml", '[deploy]\nformats = ["c", "arduino"]',
         '[deploy]\nformats = ["arduino"]')
    r = kiloml("run", "--json", "-q", cwd=project)
    assert r.returncode == 0, r.stderr
    assert {k: v for k, v in statuses(r).items() if v == "ran"} == {"deploy": "ran",
                                                                  "verify": "ran",
                                                                  "report": "ran"}
    assert sorted(os.listdir(project / "build" / "deploy")) == ["arduino", "c"]
    # a new recording in the source folder: the import runs again
    shutil.copy(WAND / "slope" / sorted(os.listdir(WAND / "slope"))[0],
                project.parent / "wand" / "ring" / "extra.txt")
    r = kiloml("run", "--json", "-q", "--until", "import", cwd=project)
    assert statuses(r) == {"import": "ran"}
    # human output: a table of steps on stdout, progress on stderr
    r = kiloml("run", "-q", "--until", "features", cwd=project)
    assert r.returncode == 0 and "features" in r.stdout and "▶ features" in r.stderr
    assert max(map(len, r.stdout.splitlines())) <= 80


def test_a_failing_step_stops_the_run_and_keeps_earlier_results(project):
    r = kiloml("run", "--json", "-q", "--until", "train", cwd=project)
    assert r.returncode == 0, r.stderr
    model = (project / "model" / "model.tflite").read_bytes()
    edit(project / "kiloml.toml", 'name = "nano33ble"', 'name = "no-such-board"')
    r = kiloml("run", "-q", "--json", cwd=project)
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert statuses(r) == {"import": "cached", "features": "cached", "train": "cached",
                           "compile": "failed"}
    assert "no-such-board" in out["error"]
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("error: step compile failed") and "Traceback" not in r.stderr
    assert (project / "model" / "model.tflite").read_bytes() == model
    assert not (project / "build" / "c").exists()
    # fixed: the failed step and what follows run, the rest stays cached
    edit(project / "kiloml.toml", 'name = "no-such-board"', 'name = "nano33ble"')
    r = kiloml("run", "-q", "--json", cwd=project)
    assert r.returncode == 0 and statuses(r)["compile"] == "ran"
    assert statuses(r)["train"] == "cached"


def test_force_and_bad_usage(project, tmp_path):
    assert kiloml("run", "-q", "--until", "features", cwd=project).returncode == 0
    r = kiloml("run", "-q", "--json", "--until", "features", "--force", "features", cwd=project)
    assert statuses(r) == {"import": "cached", "features": "ran"}
    r = kiloml("run", "--until", "deploy-to-mars", cwd=project)
    assert r.returncode == 2 and "unknown step" in r.stderr
    r = kiloml("run", cwd=tmp_path)
    assert r.returncode == 1 and "not inside a kiloml project" in r.stderr
    edit(project / "kiloml.toml", '[source]\npath = "../wand"', '[source]\npath = "../nowhere"')
    r = kiloml("run", "-q", cwd=project)
    assert r.returncode == 1 and "nowhere" in r.stderr and "does not exist" in r.stderr


def test_other_kiloml_code_recompiles_reprofiles_and_redeploys(project, monkeypatch):
    """A compile, profile or deploy made by other kiloml code (an upgrade, a changed kernel)
    is out of date: the code digest is part of those keys, so they re-run while the import,
    features and training stay cached; with the same code everything stays cached."""
    import kiloml.workflow.run as run

    r = run.run_project(project, progress=False)
    assert r["error"] is None, r["error"]
    r = run.run_project(project, progress=False)
    assert {s["status"] for s in r["steps"]} == {"cached"}
    monkeypatch.setattr(run, "code_digest", lambda: "other kiloml code")
    r = run.run_project(project, progress=False)
    assert r["error"] is None, r["error"]
    got = {s["name"]: s["status"] for s in r["steps"]}
    # the same code under another digest writes the same C, profile and package, so what
    # reads only their content (verify: the package; report: every digest) stays cached
    assert got == {"import": "cached", "features": "cached", "train": "cached",
                   "compile": "ran", "profile": "ran", "deploy": "ran", "verify": "cached",
                   "report": "cached"}, got
