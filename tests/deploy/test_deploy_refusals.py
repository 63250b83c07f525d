"""Deploying is all or nothing and deterministic: byte-identical trees for the same inputs,
clear refusals for names that collide, non-empty folders without force, bad specs; a failure
at any point leaves the output folder as it was and no temporary folder behind."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import deployhelp as H  # noqa: E402

from kiloml.deploy import deploy_arduino, deploy_c, deploy_tflite  # noqa: E402
from kiloml.deploy import package as package_mod  # noqa: E402
from kiloml.errors import DSPError, KilomlError  # noqa: E402

FORMATS = {"c": deploy_c, "arduino": deploy_arduino, "tflite": deploy_tflite}


@pytest.fixture(scope="module")
def spec():
    return H.imu_spec()


def _siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_deploying_twice_gives_byte_identical_trees(spec, fmt, tmp_path):
    a = FORMATS[fmt](spec, tmp_path / "a" / "wand")
    b = FORMATS[fmt](replace(spec, graph=H.imu_spec().graph), tmp_path / "b" / "wand")
    ta, tb = H.tree(a.path), H.tree(b.path)
    assert ta == tb and len(ta) == len(a.files)
    assert sorted(ta) == list(a.files)


@pytest.mark.parametrize("name", ["kml_common", "kml_conv", "KML_dsp", "kmlx", "stdint", "math",
                                  "Arduino", "pdm", "1abc", "_x", "a-b", "a" * 25, ""])
def test_refuses_a_colliding_or_invalid_name(spec, name, tmp_path):
    with pytest.raises(KilomlError, match="package name"):
        deploy_c(replace(spec, name=name), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_refuses_a_non_empty_folder_without_force(spec, tmp_path):
    out = tmp_path / "wand"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for deploy in FORMATS.values():
        with pytest.raises(KilomlError, match="not empty"):
            deploy(spec, out)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(KilomlError, match="not a folder"):
        deploy_c(spec, tmp_path / "file", force=True)


def test_an_empty_folder_is_used_and_force_replaces_whole(spec, tmp_path):
    out = tmp_path / "wand"
    out.mkdir()
    pkg = deploy_c(spec, out)
    assert (out / "wand.h").is_file()
    (out / "stale.c").write_text("int stale;\n")
    deploy_c(spec, out, force=True)
    assert not (out / "stale.c").exists()
    assert sorted(H.tree(out)) == list(pkg.files)
    assert _siblings(out) == []


@pytest.mark.parametrize("change,error,pattern", [
    (dict(board="no-such-board"), KilomlError, "unknown board 'no-such-board'"),
    (dict(dsp_variant="q15"), DSPError, "no 'q15' C variant"),
    (dict(board={"name": "x"}), KilomlError, "needs a 'core'"),
    (dict(labels=["a", "b"]), KilomlError, "4 outputs, but 2 labels"),
    (dict(labels=["a", "a", "b", "c"]), KilomlError, "no duplicates"),
    (dict(frames=40), KilomlError, "40 samples at 25 Hz is not 2000.0 ms"),
    (dict(sample_rate=50.0, window_ms=1000.0), KilomlError, "block's sample_rate 25"),
    (dict(channels=2), KilomlError, "features .* give 30 model inputs"),
    (dict(input_quant=(0.5, 0)), KilomlError, "not the DSP block's output quantization"),
    (dict(normalizer={"kind": "feature", "mean": [0.0], "std": [1.0]}), KilomlError,
     "per-feature mean/std have 1/1 values, the features 45"),
    (dict(normalizer={"kind": "minmax"}), KilomlError, "unknown kind 'minmax'"),
    (dict(layout="seq"), KilomlError, r"layout .seq. takes 2-D features, the block gives \[45\]"),
    (dict(layout="rows"), KilomlError, "layout .rows.: unknown"),
])
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_a_bad_spec_leaves_the_old_package_untouched(spec, fmt, change, error, pattern,
                                                      tmp_path):
    out = tmp_path / "wand"
    FORMATS[fmt](spec, out)
    before = H.tree(out)
    with pytest.raises(error, match=pattern):
        FORMATS[fmt](replace(spec, **change), out, force=True)
    assert H.tree(out) == before
    with pytest.raises(error, match=pattern):
        FORMATS[fmt](replace(spec, **change), tmp_path / "new")
    assert not (tmp_path / "new").exists()
    assert _siblings(out) == []


@pytest.mark.parametrize("existing", [False, True])
def test_a_failure_while_writing_leaves_nothing_half_written(spec, existing, tmp_path,
                                                            monkeypatch):
    out = tmp_path / "wand"
    if existing:
        deploy_c(spec, out)
    before = H.tree(out) if existing else None
    real = package_mod.write_file
    calls = []

    def failing(path, data):
        calls.append(path)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(package_mod, "write_file", failing)
    with pytest.raises(KilomlError, match="cannot write the package .No space left"):
        deploy_c(spec, out, force=True)
    assert len(calls) == 5
    assert (H.tree(out) == before) if existing else not out.exists()
    assert _siblings(out) == []


def test_rename_failure_restores_the_old_package(spec, tmp_path, monkeypatch):
    """The old folder is moved aside before the new one takes its name; if that rename
    fails, the old one comes back."""
    import os

    out = tmp_path / "wand"
    deploy_c(spec, out)
    before = H.tree(out)
    real = os.replace

    def replace_once_failing(src, dst):
        if Path(src).name.endswith(".tmp"):
            raise OSError(13, "Permission denied")
        return real(src, dst)

    monkeypatch.setattr(package_mod.os, "replace", replace_once_failing)
    with pytest.raises(KilomlError, match="Permission denied"):
        deploy_c(spec, out, force=True)
    assert H.tree(out) == before
    assert _siblings(out) == []


def test_refuses_a_model_slot_with_personalization(spec, tmp_path):
    """A personalized head would shadow an installed slot model: refused, nothing written."""
    from kiloml.deploy.personalize import Settings

    for deploy in (deploy_c, deploy_arduino):
        with pytest.raises(KilomlError, match="model_slot and \\[personalize\\]"):
            deploy(replace(spec, model_slot=True, personalize=Settings()), tmp_path / "out")
        assert not (tmp_path / "out").exists()
