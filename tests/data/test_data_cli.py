"""`kiloml init`, `kiloml data import|info`: JSON keys, exit codes, one-line errors."""

from __future__ import annotations

import json

import pytest

from datahelp import DATA, kiloml, one_line_error, tone, wav_bytes

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"no shared data at {DATA}")


def test_help_everywhere():
    for verb in (["init"], ["data"], ["data", "import"], ["data", "info"], ["data", "capture"],
                 ["dsp"]):
        r = kiloml(*verb, "--help")
        assert r.returncode == 0, r.stderr
        assert "Usage" in r.stdout


def test_init_import_info_json(tmp_path):
    p = tmp_path / "proj"
    r = kiloml("init", p, "--task", "motion", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["task"] == "motion" and (p / "kiloml.toml").is_file()
    r = kiloml("data", "import", DATA / "magic_wand", "--project", p, "--rate", "25", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert set(s["labels"]) == {"ring", "slope", "wing", "negative"} and s["skipped"] == []
    r = kiloml("data", "info", "--json", cwd=p)          # --project defaults to the cwd
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    for key in ("samples", "labels", "groups", "splits", "problems", "sample_rates"):
        assert key in info
    assert info["samples"] == sum(info["labels"].values()) == sum(info["splits"].values())
    assert info["groups"] == 14   # 8 people + 6 negative recordings without a person
    r = kiloml("data", "info", "--project", p)
    assert r.returncode == 0 and "ring" in r.stdout   # tables are results: stdout


def test_bad_usage_exits_2(tmp_path):
    assert kiloml("init", tmp_path / "x", "--task", "radar").returncode == 2
    assert kiloml("init", tmp_path / "x").returncode == 2
    kiloml("init", tmp_path / "p", "--task", "kws")
    for args in (["--format", "xls"], ["--split", "holdout"], ["--rows", "0"], ["--rate", "-1"]):
        r = kiloml("data", "import", DATA / "speech_commands" / "yes", "-p", tmp_path / "p", *args)
        assert r.returncode == 2, (args, r.stderr)


def test_bad_file_exit_1_one_line_index_unchanged(tmp_path):
    p = tmp_path / "p"
    kiloml("init", p, "--task", "kws")
    d = tmp_path / "in" / "yes"
    d.mkdir(parents=True)
    (d / "good.wav").write_bytes(wav_bytes(tone()))
    (d / "cut.wav").write_bytes(wav_bytes(tone())[:1000])
    before = (p / "dataset" / "index.csv").read_bytes()
    r = kiloml("data", "import", tmp_path / "in", "-p", p)
    assert r.returncode == 1
    msg = one_line_error(r.stderr)
    assert "cut.wav: truncated" in msg
    assert (p / "dataset" / "index.csv").read_bytes() == before
    r = kiloml("data", "import", tmp_path / "in", "-p", p, "--skip-bad", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["added"] == 1 and len(s["skipped"]) == 1 and "cut.wav" in s["skipped"][0]["file"]


def test_not_a_project(tmp_path):
    r = kiloml("data", "info", "-p", tmp_path)
    assert r.returncode == 1
    assert "kiloml.toml" in one_line_error(r.stderr)
    (tmp_path / "kiloml.toml").write_text("[data]\nsample_rate = -1\n")
    r = kiloml("data", "info", "-p", tmp_path)
    assert r.returncode == 1 and "kiloml.toml: project: Field required" in one_line_error(r.stderr)


def test_missing_path_and_debug_traceback(tmp_path):
    kiloml("init", tmp_path / "p", "--task", "custom")
    r = kiloml("data", "import", tmp_path / "nope", "-p", tmp_path / "p")
    assert r.returncode == 1 and "nope: no such file or directory" in one_line_error(r.stderr)
    r = kiloml("--debug", "data", "import", tmp_path / "nope", "-p", tmp_path / "p")
    assert r.returncode != 0 and "Traceback" in r.stderr
