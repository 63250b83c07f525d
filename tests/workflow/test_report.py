"""``kiloml report`` on a small real project: the ``report`` step of ``kiloml run`` (cached
when nothing it reads changed), byte-identical reports, the page's numbers are the project's,
and bad input: one line, exit 1 (2 for bad usage), no file left behind."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from projhelp import kiloml, statuses, wand_project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = wand_project(tmp_path_factory.mktemp("report"))
    r = kiloml("run", "-q", "--json", cwd=root)
    assert r.returncode == 0, r.stderr
    assert statuses(r)["report"] == "ran"
    return root


def test_run_writes_the_report_and_reuses_it(project):
    html = project / "build" / "report.html"
    first = html.read_bytes()
    r = kiloml("run", "-q", "--json", cwd=project)
    assert r.returncode == 0 and statuses(r)["report"] == "cached", r.stdout
    # a new training history with the same data: the report is made again
    r = kiloml("run", "-q", "--json", "--force", "train", cwd=project)
    assert r.returncode == 0 and statuses(r)["report"] == "ran", r.stdout
    assert html.read_bytes() != first   # it shows the command that made the model now
    assert "kiloml run -q --json --force train" in html.read_text()


def test_two_reports_are_byte_identical(project, tmp_path):
    a, b = tmp_path / "a.html", tmp_path / "b.html"
    for out in (a, b):
        r = kiloml("report", "-o", out, "--json", cwd=project)
        assert r.returncode == 0, r.stderr
    assert a.read_bytes() == b.read_bytes() == (project / "build" / "report.html").read_bytes()
    res = json.loads(r.stdout)
    assert res["path"] == str(b) and res["bytes"] == b.stat().st_size
    assert res["sections"] == ["data", "features", "training", "accuracy", "model", "boards",
                               "verify"]
    text = a.read_text()
    # the header: version, the commands that made the artifacts, content hashes
    meta = json.loads((project / "model" / "meta.json").read_text())
    assert meta["command"] in text and "kiloml 0.1.0" in text
    import hashlib

    for f in ("model/model.tflite", "dataset/index.csv"):
        assert hashlib.sha256((project / f).read_bytes()).hexdigest()[:16] in text
    # training curves with train and validation accuracy
    assert all("train_acc" in h and "val_acc" in h for h in meta["float_train"]["history"])
    # human output: one line naming the file
    r = kiloml("report", "-o", tmp_path / "c.html", cwd=project)
    assert r.returncode == 0 and str(tmp_path / "c.html") in r.stdout.replace("\n", "")


def test_confusion_on_the_page_is_kiloml_test(project):
    t = json.loads(kiloml("test", "--json", cwd=project).stdout)
    text = (project / "build" / "report.html").read_text()
    table = text.split('class="confusion"', 1)[1].split("</table>", 1)[0]
    rows = [[int(c.replace(",", "")) for c in re.findall(r'<td class="n">([\d,]+)</td>', r)]
            for r in table.split("<tr>")[2:]]
    assert rows == t["confusion"]
    assert f"accuracy {100 * t['accuracy']:.2f} %" in text


def _one_line(r, code: int) -> None:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert "Traceback" not in r.stderr


def test_bad_input(project, tmp_path):
    _one_line(kiloml("report", "-p", tmp_path / "nowhere"), 1)
    _one_line(kiloml("report", "-o", tmp_path / "no" / "dir" / "r.html", cwd=project), 1)
    _one_line(kiloml("report", "-o", project / "kiloml.toml" / "r.html", cwd=project), 1)
    (tmp_path / "d.html").mkdir()
    _one_line(kiloml("report", "-o", tmp_path / "d.html", cwd=project), 1)
    _one_line(kiloml("report", "-o", tmp_path / "r.txt", cwd=project), 2)
    r = kiloml("report", "--no-such-option", cwd=project)
    assert r.returncode == 2
    assert sorted(os.listdir(tmp_path)) == ["d.html"]       # nothing half-written
    assert not list((tmp_path / "d.html").iterdir())


def test_a_project_with_only_data_gets_the_data_section(tmp_path):
    root = wand_project(tmp_path)
    r = kiloml("run", "-q", "--until", "import", cwd=root)
    assert r.returncode == 0, r.stderr
    r = kiloml("report", "--json", cwd=root)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["sections"] == ["data"]
