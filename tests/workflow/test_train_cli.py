"""``kiloml train`` / ``test`` / ``optimize`` end to end on the real CWRU bearing data (10
classes, held-out time blocks; spectral features + dense model: seconds to train), the k-means
anomaly scorer, and the CLI's error handling."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trainhelp as H  # noqa: E402
from kiloml.workflow.project import ModelSection, Project  # noqa: E402

CWRU_LABELS = r"(normal|IR\d+|B\d+|OR\d+)"


def _cwru(root: Path, arch: str = "dense", epochs: int = 15, **params) -> Project:
    proj, _ = H.make_project(root, "vibration", "cwru_bearing_0hp", label_regex=CWRU_LABELS)
    proj.config.model = ModelSection(arch=arch, params=params)
    proj.config.train.epochs = epochs
    proj.save()
    return Project.load(root)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cwru") / "p"
    _cwru(root)
    r = H.kiloml("train", "-p", root, "--json")
    assert r.returncode == 0, r.stderr
    return root, json.loads(r.stdout), r.stderr


def test_train_writes_the_deployed_model(trained):
    root, s, _ = trained
    assert s["arch"] == "dense" and len(s["labels"]) == 10
    assert s["int8_accuracy"] >= 0.9 and abs(s["int8_accuracy"] - s["float_accuracy"]) <= 0.03
    for f in ("model.tflite", "float.pt", "qnet.pt", "meta.json"):
        assert (root / "model" / f).is_file()
    meta = json.loads((root / "model" / "meta.json").read_text())
    assert " train -p " in meta["command"] and meta["normalizer"]["kind"] == "feature"
    assert meta["float_train"]["epochs_run"] == 15


def test_train_progress_goes_to_stderr(trained):
    _, _, stderr = trained
    assert "epoch 1:" in stderr and "val_acc" in stderr


def test_test_json_matches_training_summary(trained):
    root, s, _ = trained
    r = H.kiloml("test", "-p", root, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert {"accuracy", "per_class", "confusion", "n"} <= set(out)
    assert out["accuracy"] == s["int8_accuracy"]
    assert out["n"] == sum(map(sum, out["confusion"])) == 122
    assert set(out["per_class"]) == set(s["labels"])
    human = H.kiloml("test", "-p", root)
    assert human.returncode == 0 and "accuracy" in human.stdout
    assert max(map(len, human.stdout.splitlines())) <= 80


def test_test_on_another_folder(trained, tmp_path):
    root, _, _ = trained
    data = tmp_path / "more"
    for lab, f in (("normal", "normal_0_97.mat"), ("IR007", "12k_Drive_End_IR007_0_105.mat")):
        (data / lab).mkdir(parents=True)
        os.symlink(H.DATA / "cwru_bearing_0hp" / f, data / lab / f)
    r = H.kiloml("test", "-p", root, "--data", data, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["n"] == 238 + 118          # every 1024-sample window of both whole recordings
    assert out["per_class"]["normal"]["support"] == 238
    assert out["accuracy"] >= 0.9         # mostly windows the model trained on


def test_test_rejects_unknown_labels(trained, tmp_path):
    root, _, _ = trained
    (tmp_path / "mystery").mkdir()
    os.symlink(H.DATA / "cwru_bearing_0hp" / "normal_0_97.mat", tmp_path / "mystery" / "n.mat")
    r = H.kiloml("test", "-p", root, "--data", tmp_path)
    assert r.returncode == 1
    assert r.stderr.startswith("error:") and "mystery" in r.stderr and "Traceback" not in r.stderr


def test_optimize_variants(trained):
    root, _, _ = trained
    r = H.kiloml("optimize", "-p", root, "--variants", "float,ptq,pruned,sparse", "--board",
                 "nano33ble", "--json", "-q")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    rows = {v["name"]: v for v in out["variants"]}
    assert list(rows) == ["float", "ptq", "pruned", "sparse"]
    assert rows["ptq"]["profile_runtime"] == "armv7em"
    assert rows["pruned"]["weights_bytes"] < 0.6 * rows["ptq"]["weights_bytes"]
    assert rows["pruned"]["macs"] < 0.6 * rows["ptq"]["macs"]
    assert rows["pruned"]["flash_bytes"] < rows["ptq"]["flash_bytes"]
    assert rows["sparse"]["weights_bytes"] == rows["ptq"]["weights_bytes"]
    assert rows["sparse"]["sparsity"] >= 0.45
    assert rows["float"]["estimated"] and rows["float"]["flash_bytes"] > rows["ptq"]["weights_bytes"]
    for v in rows.values():
        assert v["metric"] >= 0.85, v
        assert Path(v["file"]).is_file()
    human = H.kiloml("optimize", "-p", root, "--variants", "ptq", "--board", "none", "-q")
    assert human.returncode == 0 and "variants of dense" in human.stdout
    assert max(map(len, human.stdout.splitlines())) <= 80


def test_profile_project_features_and_inference(trained, tmp_path):
    """``kiloml profile -p``: the project's spectral block (f32) and model on the board; the
    DSP C's output in the emulator equals the host build's; totals add up."""
    root, _, _ = trained
    r = H.kiloml("profile", "-p", root, "--board", "nucleo-l4r5zi", "--rate", "10",
                 "--battery", "500", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    d, pl = out["dsp"], out["pipeline"]
    assert out["output_matches_reference"] is True and d["output_matches_host"] is True
    assert d["block"] == "spectral" and d["runtime"] == "hard-float" and d["cycles"] > 0
    assert "test window" in d["window"]
    assert pl["latency_ms"] == pytest.approx(out["latency_ms"] + d["latency_ms"], abs=1e-3)
    assert pl["flash_bytes"] == out["flash_bytes"] + d["flash_bytes"]
    assert pl["ram_bytes"] == out["ram_bytes"] + d["ram_bytes"] and pl["fits"] is True
    assert out["battery_days"] > 0
    # Cortex-M0+ has no FPU: the float-only spectral block runs in software floating point
    r = H.kiloml("profile", "-p", root, "--board", "pico", "--json")
    assert r.returncode == 0, r.stderr
    pico = json.loads(r.stdout)["dsp"]
    assert pico["runtime"] == "soft-float" and pico["output_matches_host"] is True
    assert pico["cycles"] > 3 * d["cycles"]
    human = H.kiloml("profile", "-p", root)          # the project's board
    assert human.returncode == 0 and "features + inference" in human.stdout
    assert max(map(len, human.stdout.splitlines())) <= 80
    bad = H.kiloml("profile", "-p", root, "--dsp-variant", "q15")
    assert bad.returncode == 1 and "q15" in bad.stderr and "Traceback" not in bad.stderr
    r = H.kiloml("profile", cwd=tmp_path)   # no model, no project here or above
    assert r.returncode == 1 and "not inside a kiloml project" in r.stderr


def test_kmeans_anomaly_detector(tmp_path):
    root = tmp_path / "a"
    _cwru(root, arch="kmeans", n_clusters=8)
    r = H.kiloml("train", "-p", root, "--json", "-q")
    assert r.returncode == 0, r.stderr
    r = H.kiloml("test", "-p", root, "--json")
    out = json.loads(r.stdout)
    assert out["roc_auc"] >= 0.95                    # normal vs the nine fault classes
    assert out["labels"] == ["normal", "anomaly"] and out["n"] == 122


def test_errors_are_one_line(tmp_path):
    root = tmp_path / "e"
    _cwru(root)
    r = H.kiloml("test", "-p", root)
    assert r.returncode == 1 and "kiloml train" in r.stderr and "Traceback" not in r.stderr
    r = H.kiloml("test", "-p", root, "--data", tmp_path / "nope")
    assert r.returncode == 2 and "no such file" in r.stderr
    r = H.kiloml("optimize", "-p", root, "--variants", "float,magic")
    assert r.returncode == 2 and "magic" in r.stderr
    r = H.kiloml("train", "-p", tmp_path / "not-a-project")
    assert r.returncode == 1 and "not a kiloml project" in r.stderr


def test_train_with_a_tflite_teacher_and_qat(trained, tmp_path):
    """Distillation from an int8 .tflite teacher (here the model trained above) through the
    project's [train] section, then QAT: the exported model scores what QAT evaluation said."""
    teacher_root, s, _ = trained
    root = tmp_path / "d"
    proj = _cwru(root, epochs=8)
    proj.config.train.teacher = str(teacher_root / "model" / "model.tflite")
    proj.config.train.teacher_labels = s["labels"]
    proj.config.train.distill_epochs = 6             # after train.epochs on the labels
    proj.save()
    r = H.kiloml("train", "-p", root, "--qat-epochs", "2", "--json", "-q")
    assert r.returncode == 0, r.stderr
    meta = json.loads((root / "model" / "meta.json").read_text())
    assert meta["recipe"]["teacher"].endswith("model.tflite")
    assert meta["float_train"]["epochs_run"] == 8 and meta["distill_train"]["epochs_run"] == 6
    assert meta["qat_train"]["epochs_run"] == 2
    t = meta["test"]
    assert t["int8"]["accuracy"] >= 0.9, t
    assert abs(t["qat_eval"]["accuracy"] - t["int8"]["accuracy"]) <= 1 / 122 + 1e-9
    assert any(p.name.startswith("teacher-") for p in (root / ".kiloml" / "cache").iterdir())
    # the distilled variant: the trained model is the student's starting point
    r = H.kiloml("optimize", "-p", root, "--variants", "distilled", "--board", "none", "--json",
                 "-q")
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)["variants"][0]
    assert "teaching the trained model" in row["source"] and row["metric"] >= 0.9, row
    assert (root / "model" / "variants" / "distilled_float.pt").is_file()
