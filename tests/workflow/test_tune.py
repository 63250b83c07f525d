"""``kiloml tune`` on a small real gesture project: the search, its Pareto front, the figures
against an independent ``kiloml profile`` of the trial's model, resuming, --apply, limits
that no trial meets, pruning, and bad input."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from projhelp import edit, kiloml, wand_project

SPACE = """
[tune.space]
"model.params.hidden" = [[8], [16], [32, 16]]
"dsp.params.fft_length" = [16, 32]
"""


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """The wand project (ring, wing) imported, with a 6-point space and 3-epoch trials."""
    root = wand_project(tmp_path_factory.mktemp("tune"), epochs=3)
    r = kiloml("run", "-q", "--until", "import", cwd=root)
    assert r.returncode == 0, r.stderr
    edit(root / "kiloml.toml", "min_epochs = 2\n", "epochs = 3\nmin_epochs = 1\n")
    (root / "kiloml.toml").write_text((root / "kiloml.toml").read_text() + SPACE)
    return root


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """A new wand project (nothing imported): bad input fails before any data is read."""
    return wand_project(tmp_path_factory.mktemp("fresh"))


def _dominates(a: dict, b: dict) -> bool:
    ka = (-a["accuracy"], a["latency_ms"], a["ram_kb"], a["flash_kb"])
    kb = (-b["accuracy"], b["latency_ms"], b["ram_kb"], b["flash_kb"])
    return all(x <= y for x, y in zip(ka, kb)) and ka != kb


@pytest.fixture(scope="module")
def searched(imported):
    r = kiloml("tune", "--trials", "3", "--json", cwd=imported)
    assert r.returncode == 0, r.stderr
    return imported, json.loads(r.stdout)


def test_trials_front_and_figures_from_the_emulator(searched):
    root, res = searched
    rows = res["trials"]
    assert [r["number"] for r in rows] == [0, 1, 2]
    assert res["defaults"]["state"] == "complete" and res["defaults"]["params"] == {}
    done = [r for r in rows if r["state"] == "complete"]
    assert done, rows
    for r in done:
        assert 0 < r["accuracy"] <= 1 and r["latency_ms"] > 0 and r["ram_kb"] > 0
        assert set(r["params"]) == {"model.params.hidden", "dsp.params.fft_length"}
    # the front: exactly the feasible trials no other one dominates (checked here by brute
    # force over the reported figures)
    want = [r["number"] for r in done
            if r["fits"] and not any(_dominates(o, r) for o in done if o["fits"])]
    assert res["pareto"] == want and want
    # a front trial's figures are those of an independent `kiloml profile` of its model
    n = want[0]
    scratch = root / ".kiloml" / "tune" / res["study"] / f"trial-{n}"
    p = kiloml("profile", "--project", scratch, "--json", cwd=root)
    assert p.returncode == 0, p.stderr
    pipe = json.loads(p.stdout)["pipeline"]
    row = next(r for r in rows if r["number"] == n)
    assert row["latency_ms"] == pytest.approx(pipe["latency_ms"], abs=1e-4)
    assert row["ram_kb"] == pytest.approx(pipe["ram_bytes"] / 1024, abs=1e-3)
    assert row["flash_kb"] == pytest.approx(pipe["flash_bytes"] / 1024, abs=1e-3)
    # trials never touch the project's own model or features
    assert not (root / "model").exists()


def test_a_limit_keeps_breaking_trials_off_the_front(searched):
    root, res = searched
    done = sorted((t for t in res["trials"] if t["state"] == "complete"),
                  key=lambda t: t["ram_kb"])
    if len({t["ram_kb"] for t in done}) < 2:
        pytest.fail(f"the test needs trials of two RAM sizes: {done}")
    lim = (done[0]["ram_kb"] + done[-1]["ram_kb"]) / 2
    r = kiloml("tune", "--trials", "3", "--max-ram-kb", lim, "--json", cwd=root)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for t in out["trials"]:
        if t["number"] in out["pareto"]:
            assert t["ram_kb"] <= lim
        if t.get("ram_kb", 0) > lim:
            assert t["number"] not in out["pareto"] and not t.get("fits")


def test_resume_runs_only_the_missing_trials_and_apply(searched):
    root, res = searched
    r = kiloml("tune", "--trials", "4", "--json", cwd=root)
    assert r.returncode == 0, r.stderr
    again = json.loads(r.stdout)
    assert again["study"] == res["study"]
    assert [t["number"] for t in again["trials"]] == [0, 1, 2, 3]
    for old, new in zip(res["trials"], again["trials"]):  # the stored trials, unchanged
        assert {k: v for k, v in old.items() if k != "pareto"} == \
            {k: v for k, v in new.items() if k != "pareto"}
    best = again["pareto"][0]
    params = next(t["params"] for t in again["trials"] if t["number"] == best)
    a = kiloml("tune", "--apply", best, "--json", cwd=root)
    assert a.returncode == 0, a.stderr
    applied = json.loads(a.stdout)
    assert 0 < applied["test_accuracy"] <= 1
    text = (root / "kiloml.toml").read_text()
    hidden = params["model.params.hidden"]
    assert f"hidden = [{', '.join(map(str, hidden))}]" in text
    assert f"fft_length = {params['dsp.params.fft_length']}" in text
    assert "[tune.space]" in text  # the search itself is kept
    bad = kiloml("tune", "--apply", 99, cwd=root)
    assert bad.returncode == 2 and "no trial 99" in bad.stderr
    # the last study again, without new trials, and its plot
    show = kiloml("tune", "--show", "--plot", root / "front.svg", "--json", cwd=root)
    assert show.returncode == 0, show.stderr
    assert [t["number"] for t in json.loads(show.stdout)["trials"]] == [0, 1, 2, 3]
    svg = (root / "front.svg").read_text()
    assert svg.startswith("<svg") and 'data-plot="tune-front"' in svg
    assert svg.count("<path") > 3 * len(again["trials"])  # a marker per trial and panel


def test_impossible_limit_is_a_message_after_the_search(imported):
    r = kiloml("tune", "--trials", "2", "--max-ram-kb", "0.1", "--json", cwd=imported)
    assert r.returncode == 1
    res = json.loads(r.stdout)
    assert res["pareto"] == [] and len(res["trials"]) == 2
    assert all(t["state"] == "infeasible" and t["accuracy"] is None for t in res["trials"])
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "no trial meets the limits" in last
    assert "RAM <= 0.1 KB" in last and "Traceback" not in r.stderr


SPACE_OF = "[tune.space]\n"


@pytest.mark.parametrize("old,new,where", [
    ("min_epochs = 2\n", "min_epochs = 2\ntrails = 3\n",
     "tune.trails: unknown key; did you mean 'trials'?"),
    ("reduction = 3\n", "reduction = 1\n",
     "tune.reduction: 1: Input should be greater than or equal to 2"),
    (None, '"dsp.params.fft_lenght" = [16]\n',
     "'dsp.params.fft_lenght': unknown key; did you mean 'dsp.params.fft_length'?"),
    (None, '"dsp.params.fft_length" = {low = 64, high = 16}\n',
     "high (16) must be greater than low (64)"),
    (None, '"dsp.params.fft_length" = [4, 16]\n', "'dsp.params.fft_length' = 4:"),
    (None, '"model.width" = [4]\n', "'model.width': unknown key"),
])
def test_bad_tune_settings_are_one_line(fresh, tmp_path, old, new, where):
    root = tmp_path / "p"
    shutil.copytree(fresh, root)
    if old is None:  # a [tune.space] entry
        (root / "kiloml.toml").write_text((root / "kiloml.toml").read_text() + SPACE_OF + new)
    else:  # a key of [tune] itself
        edit(root / "kiloml.toml", old, new)
    r = kiloml("tune", "--trials", "1", cwd=root)
    assert r.returncode == 1, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and where in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (root / ".kiloml" / "tune").exists()


@pytest.mark.parametrize("args,where", [
    (["--trials", "0"], "--trials must be at least 1"),
    (["--max-ram-kb", "-1"], "--max-ram-kb must be a positive number"),
    (["--board", "nope"], "unknown board 'nope'"),
    (["--backend", "spark"], "--backend must be local or ray"),
    (["--plot", "front.png"], "the plot is SVG"),
])
def test_bad_usage_exits_2(fresh, args, where):
    r = kiloml("tune", *args, cwd=fresh)
    assert r.returncode == 2 and where in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- the machinery, in process


def test_rungs_follow_the_reduction():
    from kiloml.workflow.tune import rungs

    assert rungs(60, 2, 3) == [2, 6, 20]
    assert rungs(80, 5, 2) == [5, 10, 20, 40]
    assert rungs(3, 1, 3) == [1]
    assert rungs(2, 2, 3) == []


def test_pruner_compares_only_with_trials_that_cost_no_more():
    from kiloml.workflow.tune import Pruned, Search, _rung_pruner

    class FakeStudy:
        user_attrs: dict = {}

        def set_user_attr(self, k, v):
            self.user_attrs[k] = v

    s = Search(project=None, dims=[], limits=None, epochs=9, rung_epochs=(3,), reduction=3,
               seed=0)
    st = FakeStudy()
    small = {"latency_ms": 1.0, "ram_kb": 1.0, "flash_kb": 10.0}
    big = {"latency_ms": 2.0, "ram_kb": 2.0, "flash_kb": 20.0}
    _rung_pruner(st, s, 0)(3, 0.9, big)
    _rung_pruner(st, s, 1)(3, 0.8, big)
    # a small model behind two bigger ones: nothing that costs no more beats it
    _rung_pruner(st, s, 2)(3, 0.5, small)
    # a big one behind the best third of the big ones (and the small one): pruned
    with pytest.raises(Pruned):
        _rung_pruner(st, s, 3)(3, 0.7, big)
    # too few comparable trials: never pruned
    st.user_attrs.clear()
    _rung_pruner(st, s, 4)(3, 0.9, big)
    _rung_pruner(st, s, 5)(3, 0.1, big)


def test_pruned_trial_stops_at_its_rung_and_interrupted_trial_runs_again(imported, tmp_path):
    import optuna

    from kiloml.workflow.project import Project
    from kiloml.workflow.tune import Pruned, make_search, open_study, run_trial, tune

    s = make_search(Project.load(imported))

    def always(epoch, acc, pre):
        raise Pruned(epoch, acc)

    rec = run_trial(s.project, {"model.params.hidden": [8]}, tmp_path / "t", tmp_path / "c",
                    s.limits, 3, always, (1,))
    assert rec["state"] == "pruned" and rec["epochs_run"] == 1 and math.isfinite(
        rec["pruned_accuracy"])
    # an interrupted trial (RUNNING in the study) is failed and its values run again
    study = open_study(s)
    before = len(study.trials)
    t = study.ask()
    params = {d.key: d.suggest(t) for d in s.dims}
    res = tune(imported, trials=before + 1)
    assert res["trials"][-1]["params"] == params
    TS = optuna.trial.TrialState
    assert study.get_trials(states=(TS.RUNNING,)) == []


def test_a_trial_measures_the_same_whatever_ran_before_it(imported, tmp_path):
    """The untrained model's figures (the pruner's and an infeasible trial's) do not depend
    on the process's random state: its initialization is seeded per trial. (Unseeded, the
    calibration of random weights moves the emulated latency by a few microseconds.)"""
    import torch

    from kiloml.workflow.project import Project
    from kiloml.workflow.tune import Limits, make_search, run_trial

    s = make_search(Project.load(imported))
    tiny = Limits(s.limits.board, max_ram_kb=0.01)  # infeasible: measured, never trained
    recs = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        recs.append(run_trial(s.project, {"model.params.hidden": [32, 16]},
                              tmp_path / f"t{seed}", tmp_path / "c", tiny, 3))
    assert recs[0]["state"] == "infeasible", recs[0]
    assert recs[0]["pre_figures"] == recs[1]["pre_figures"]


def test_report_has_a_deterministic_tuning_section(searched, tmp_path):
    import re

    import shutil

    # Other tests of this module run later studies in the same project (an impossible limit,
    # --apply): on a copy, the defaults' search is made the last one again (its stored trials
    # are reused) so the report shows a study with a front whatever ran before.
    root = tmp_path / "p"
    shutil.copytree(searched[0], root)
    r = kiloml("tune", "--trials", "3", "--json", cwd=root)
    assert r.returncode == 0, r.stderr
    show = kiloml("tune", "--show", "--json", cwd=root)
    assert show.returncode == 0, show.stderr
    res = json.loads(show.stdout)
    pages = []
    for name in ("a.html", "b.html"):
        r = kiloml("report", "-o", tmp_path / name, cwd=root)
        assert r.returncode == 0, r.stderr
        pages.append((tmp_path / name).read_bytes())
    assert pages[0] == pages[1]  # no wall-clock times of the trials, same SVG
    page = pages[0].decode()
    sec = page[page.index('<section id="tuning">'):]
    sec = sec[:sec.index("</section>")]
    assert sec.count("<svg") == 1 and 'data-plot="tune-front"' in sec
    body = sec[sec.index("<tbody>"):]
    rows = re.findall(r"<tr><td>([^<]+)</td>", body)
    assert rows == ["defaults"] + [str(t["number"]) for t in res["trials"]]
    for t in res["trials"]:
        row = body.split(f"<tr><td>{t['number']}</td>")[1].split("</tr>")[0]
        assert ("★" in row) == (t["number"] in res["pareto"])
        if t.get("latency_ms") is not None:
            assert f'<td class="n">{t["latency_ms"]:,.3f}</td>' in row
        if t.get("accuracy") is not None:
            assert f'<td class="n">{100 * t["accuracy"]:,.2f}</td>' in row
    assert f"Pareto front: trials {', '.join(map(str, res['pareto']))}" in sec
