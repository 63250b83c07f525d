"""A project whose test split has no windows (data.test = 0): training evaluates on the
validation split, and nothing calls that figure a test accuracy: ``kiloml train`` shows the
int8 test accuracy as n/a (JSON null) and the validation figures under their own names,
``kiloml run`` says so in its log."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from projhelp import edit, kiloml, wand_project  # noqa: E402


def test_no_test_windows_is_na_not_the_validation_accuracy(tmp_path):
    root = wand_project(tmp_path, epochs=1)
    edit(root / "kiloml.toml", "test = 0.1\n", "test = 0.0\n")
    r = kiloml("run", "--project", root, "--until", "train")
    assert r.returncode == 0, r.stderr
    log = " ".join(r.stderr.split())          # the log wraps at 80 columns
    assert "int8 test accuracy n/a (the test split has no windows; validation" in log
    assert "on the test split" not in log
    meta = json.loads((root / "model" / "meta.json").read_text())
    assert meta["evaluated_on"] == "validation"
    r = kiloml("train", "--project", root, "-q", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["int8_accuracy"] is None and s["float_accuracy"] is None
    assert s["evaluated_on"] == "validation"
    assert 0 <= s["validation_int8_accuracy"] <= 1
    r = kiloml("train", "--project", root, "-q")
    assert r.returncode == 0, r.stderr
    row = next(ln for ln in r.stdout.splitlines() if ln.strip().startswith("int8_accuracy"))
    assert row.split()[-1] == "n/a"
