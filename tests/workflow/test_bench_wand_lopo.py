"""benchmarks/wand_lopo.py's issue-15 additions: the validation figure "val last N" (the mean
of the last N epochs' validation accuracy), the teachers of a distilled student (the fold's
models of the other seeds 0-3), and one distilled fold end to end on the real magic_wand data
(one epoch per phase): the student's first phase is the stored ``strong`` run's, resumed at its
end, and the distillation phase is taught by the three stored teachers."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
from trainhelp import require_shared  # noqa: E402


def _bench():
    spec = importlib.util.spec_from_file_location("bench_wand_lopo",
                                                  TESTS.parent / "benchmarks" / "wand_lopo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_val_last_is_the_mean_of_the_last_epochs():
    bench = _bench()
    # 60 epochs with val_acc = epoch / 100; the last 10 are 0.51 .. 0.60: mean 0.555
    hist = [{"epoch": e, "train_loss": 1.0, "val_acc": e / 100} for e in range(1, 61)]
    assert bench.val_last(hist, 10) == pytest.approx(0.555)
    assert bench.val_last(hist[:4], 10) == pytest.approx((0.01 + 0.02 + 0.03 + 0.04) / 4)
    with pytest.raises(ValueError):
        bench.val_last([{"epoch": 1, "train_loss": 1.0}])


def test_teachers_are_the_other_seeds_models(tmp_path):
    bench = _bench()
    assert bench.teacher_seeds(0) == [1, 2, 3] and bench.teacher_seeds(2) == [0, 1, 3]
    for k in (0, 1, 3):
        d = bench.stored(tmp_path, "strong", k, "lsj")
        d.mkdir(parents=True)
        (d / "model.tflite").write_bytes(b"x")
    assert bench.fold_teachers(tmp_path, "strong", 2, "lsj") == [
        str(bench.stored(tmp_path, "strong", k, "lsj") / "model.tflite") for k in (0, 1, 3)]
    # seed 0's teachers need seed 2's model, which is missing: one line naming it
    with pytest.raises(SystemExit) as e:
        bench.fold_teachers(tmp_path, "strong", 0, "lsj")
    msg = str(e.value)
    assert "strong-2/lsj/model.tflite: no teacher model" in msg and "--seed 2" in msg
    assert "\n" not in msg


def test_recipe_keys_of_the_distilled_students(tmp_path):
    from kiloml.workflow.project import DSPSection, ModelSection, init_project

    bench = _bench()
    p = init_project(tmp_path / "p", "motion")
    p.config.dsp = DSPSection(block="raw")
    p.config.model = ModelSection(arch="cnn1d")
    special = bench.apply_recipe(p, "strong-distill-wide", 3, threads=1)
    assert special == {"teachers": "strong-wide", "first": "strong"}
    assert p.config.train.seed == 3 and p.config.train.threads == 1
    assert p.config.train.teacher_sees == "batch" and p.config.train.epochs == 60
    assert p.config.data.augment.speed_range == 0.1 and p.config.data.augment.rotate_deg == 30
    assert "channels" not in p.config.model.params      # the student keeps its size
    bench.apply_recipe(p, "strong-wide", 0)
    assert p.config.model.params["channels"] == [24, 48, 96]
    bench.apply_recipe(p, "strong-distill-mix", 0)
    assert p.config.train.distill_mixup == 0.2


@pytest.mark.slow
def test_a_distilled_fold_end_to_end(tmp_path, monkeypatch):
    require_shared()
    bench = _bench()
    monkeypatch.setattr(bench, "FORMER", {"train.epochs": 1})   # one epoch per phase
    work = tmp_path / "w"
    for k in (0, 1, 2, 3):
        res = bench.run(work, "strong", 1, seed=k, threads=1)
        assert [r["person"] for r in res["rows"]] == ["dengyl"]
    first = bench.stored(work, "strong", 0, "dengyl") / "float_last.pt"
    assert first.is_file()
    res = bench.run(work, "strong-distill", 1, seed=0, threads=1)
    row, = res["rows"]
    meta = json.loads((work / "wand-lopo-strong-distill-0" / "model" / "meta.json").read_text())
    assert meta["recipe"]["teacher"] == [
        str(bench.stored(work, "strong", k, "dengyl") / "model.tflite") for k in (1, 2, 3)]
    assert meta["recipe"]["teacher_sees"] == "batch"
    # the first phase was resumed at its end (nothing trained), the distillation ran
    assert meta["float_train"]["resumed_from"] == 1 and meta["distill_train"]["epochs_run"] == 1
    # the row's validation figures are the distillation phase's
    hist = meta["distill_train"]["history"]
    assert row["val_hist"] == [h["val_acc"] for h in hist]
    assert row["val"] == meta["distill_train"]["best_metric"]
    assert row["val_last"] == round(bench.val_last(hist), 5)
    assert row["int8"] == meta["test"]["int8"]["accuracy"] and row["n"] == 100
    assert 0.0 <= row["val_int8"] <= 1.0


def test_summarize_per_person(tmp_path, capsys):
    bench = _bench()
    def rows(a, b):
        return [{"person": "ann", "n": 4, "int8": a, "val": 1.0, "val_last": 0.5},
                {"person": "bob", "n": 2, "int8": b, "val": 1.0, "val_last": 0.7}]

    f = tmp_path / "runs.json"
    f.write_text(json.dumps([{"recipe": "r", "seed": 0, "rows": rows(0.75, 1.0)},
                             {"recipe": "r", "seed": 1, "rows": rows(1.0, 0.5)}]))
    bench.out.width = 200
    bench.summarize([f], ("r",))
    text = capsys.readouterr().out
    # ann 75 / 100 (mean 87.50), bob 100 / 50 (75.00); seed means 87.50 / 75.00 (81.25);
    # worst 75.00 / 50.00; val last (0.5 + 0.7) / 2 = 60.00 on both seeds
    lines = {ln.split("│")[1].strip(): [c.strip() for c in ln.split("│")[2:-1]]
             for ln in text.splitlines() if ln.startswith("│")}
    assert lines["ann"] == ["4", "75.00", "100.00", "87.50"]
    assert lines["bob"] == ["2", "100.00", "50.00", "75.00"]
    assert lines["mean"] == ["", "87.50", "75.00", "81.25"]
    assert lines["worst"] == ["", "75.00", "50.00", ""]
    assert lines["val last 10"] == ["", "60.00", "60.00", ""]
    with pytest.raises(SystemExit, match="no run of recipe 'nope'"):
        bench.summarize([f], ("nope",))
