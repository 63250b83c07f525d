"""Projects and imports of the four real data sets; atomicity; group-disjoint splits."""

from __future__ import annotations

import shutil
from collections import Counter, defaultdict

import numpy as np
import pytest

from datahelp import CUSTOM, DATA, KWS, MOTION, VIBRATION, new_dataset, tone, wav_bytes
from kiloml.data import (DatasetIndex, SourceCache, dataset_info, import_data, load_windows,
                         make_windows)
from kiloml.data.splits import group_leaks
from kiloml.errors import DataError, ProjectError
from kiloml.workflow.project import Project, init_project

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"no shared data at {DATA}")
SC_LABELS = {"yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
             "_silence_", "_unknown_"}


def assert_group_disjoint(samples):
    assert group_leaks(samples) == {}
    where = defaultdict(set)
    for s in samples:
        if s.role == "sample" and s.group and "time_block" not in s.reader_options():
            where[s.group].add(s.split)
    assert all(len(v) == 1 for v in where.values())


@pytest.fixture(scope="module")
def kws(tmp_path_factory):
    ds, cfg = new_dataset(tmp_path_factory.mktemp("kws") / "p", KWS)
    res = import_data(ds, cfg, DATA / "speech_commands")
    return ds, cfg, res


def test_speech_commands_import(kws):
    ds, cfg, res = kws
    idx = DatasetIndex.load(ds.index_path)
    samples = idx.of_role("sample")
    assert len(samples) == 3975 and {s.label for s in samples} == SC_LABELS
    assert len(idx.of_role("noise")) == 6
    speakers = {s.group for s in samples if s.group}
    assert len(speakers) == 191
    # Speaker = the 8 hex digits before _nohash_, also for _unknown_ clips named word_spk_...
    s = next(s for s in samples if s.id == "_unknown_/backward_0c540988_nohash_0")
    assert s.group == "0c540988" and s.label == "_unknown_"
    assert all(not s.group for s in samples if s.label == "_silence_")
    assert all(s.sample_rate == 16000 and s.channels == 1 and s.format == "wav" for s in samples)
    assert_group_disjoint(samples)
    # Stratified: every label within 2 points of the 80/10/10 target.
    per = defaultdict(Counter)
    for s in samples:
        per[s.label][s.split] += 1
    for lab, c in per.items():
        n = sum(c.values())
        assert abs(c["test"] / n - 0.1) < 0.02 and abs(c["validation"] / n - 0.1) < 0.02, (lab, c)


def test_speech_commands_info(kws):
    ds, cfg, _ = kws
    info = dataset_info(ds, cfg)
    assert info["samples"] == 3975 and info["groups"] == 191
    assert set(info["labels"]) == SC_LABELS and sum(info["labels"].values()) == 3975
    assert sum(info["splits"].values()) == 3975 and set(info["splits"]) == {"train", "validation",
                                                                              "test"}
    assert info["sample_rates"] == {"16000": 3975} and info["noise"]["clips"] == 6
    assert info["ungrouped_samples"] == 312
    assert not any("missing" in p or "changed" in p or "more than one split" in p
                   for p in info["problems"])


def test_reimport_adds_nothing_and_keeps_index(kws):
    ds, cfg, _ = kws
    before = ds.index_path.read_bytes()
    with pytest.raises(DataError, match="every one of its 344 files would be its own label"):
        import_data(ds, cfg, DATA / "speech_commands" / "yes")
    res = import_data(ds, cfg, DATA / "speech_commands" / "yes", label="yes")
    assert res.added == [] and res.duplicates == 344
    assert ds.index_path.read_bytes() == before


def test_loader_returns_the_clip(kws):
    ds, cfg, _ = kws
    idx = DatasetIndex.load(ds.index_path)
    s = next(s for s in idx if s.id == "yes/022cd682_nohash_0")
    c = SourceCache(ds)
    x16 = c.load(s, int16=True)
    assert x16.dtype == np.int16 and x16.shape == (16000, 1)
    np.testing.assert_array_equal(c.load(s)[:, 0], x16[:, 0] / 32768)


def test_magic_wand_import(tmp_path):
    ds, cfg = new_dataset(tmp_path / "w", MOTION)
    res = import_data(ds, cfg, DATA / "magic_wand", rate=25)
    samples = DatasetIndex.load(ds.index_path).of_role("sample")
    labels = Counter(s.label for s in samples)
    assert set(labels) == {"ring", "slope", "wing", "negative"}
    assert labels["ring"] == 176  # 21+40+22+21+22+20+20+10 '-,-,-' gestures in the 8 files
    people = {"dengyl", "hyw", "jiangyh", "liucx", "lsj", "pengxl", "shiyun", "tangsy"}
    assert people <= {s.group for s in samples}
    # jiangyh recorded ring, slope, wing and negative: one person, one split.
    assert len({s.split for s in samples if s.group == "jiangyh"}) == 1
    # The continuous negative streams have no person: each recording is its own group.
    assert {s.group for s in samples if s.source.endswith("output_negative_1.txt")} == \
        {"output_negative_1"}
    assert_group_disjoint(samples)
    assert {s.split for s in samples} == {"train", "validation", "test"}
    assert any("terminal junk" in n for n in res.notes)
    assert all(s.sample_rate == 25 and s.channels == 3 for s in samples)


def test_arduino_punch_flex_import(tmp_path):
    ds, cfg = new_dataset(tmp_path / "a", MOTION, channels=6)
    res = import_data(ds, cfg, DATA / "arduino_punch_flex", rows=119, rate=119)
    samples = DatasetIndex.load(ds.index_path).of_role("sample")
    assert Counter(s.label for s in samples) == {"punch": 20, "flex": 15}
    assert all(s.length == 119 for s in samples)
    assert [s.offset for s in samples if s.label == "punch"][:3] == [0, 119, 238]
    assert res.ignored and all("LICENSE" in i or "SOURCE" in i for i in res.ignored)


def test_cwru_windowed_into_ten_classes(tmp_path):
    ds, cfg = new_dataset(tmp_path / "c", VIBRATION)
    import_data(ds, cfg, DATA / "cwru_bearing_0hp", label_regex=r"(normal|IR\d+|B\d+|OR\d+)")
    samples = DatasetIndex.load(ds.index_path).of_role("sample")
    assert len({s.label for s in samples}) == 10
    # One recording per class: contiguous, non-overlapping train | validation | test blocks.
    by_src = defaultdict(list)
    for s in samples:
        by_src[s.source].append(s)
    for src, blocks in by_src.items():
        blocks.sort(key=lambda s: s.offset)
        assert [b.split for b in blocks] == ["train", "validation", "test"]
        assert all(a.offset + a.length == b.offset for a, b in zip(blocks, blocks[1:]))
        total = sum(b.length for b in blocks)
        assert abs(blocks[-1].length / total - 0.1) < 0.01
    x, wins = load_windows(ds, cfg)
    assert x.shape[1:] == (1024, 1) and len({w.label for w in wins}) == 10
    for w in wins:  # no window crosses its block, hence no window straddles two splits
        s = next(s for s in samples if s.id == w.sample_id)
        assert w.offset + w.length <= s.length
    counts = Counter((w.label, w.split) for w in wins)
    assert all(counts[(lab, sp)] > 0 for lab in {w.label for w in wins}
               for sp in ("train", "validation", "test"))
    assert counts[("normal", "train")] == (round(243_938 * 0.8) - 1024) // 1024 + 1 == 190


# ---------------------------------------------------------------- atomicity and bad input


def _bad_folder(tmp_path):
    d = tmp_path / "in"
    (d / "yes").mkdir(parents=True)
    (d / "no").mkdir()
    (d / "yes" / "a.wav").write_bytes(wav_bytes(tone()))
    (d / "yes" / "b.wav").write_bytes(wav_bytes(tone())[:-7])          # truncated
    (d / "no" / "c.wav").write_bytes(wav_bytes(tone(8000, rate=8000), rate=8000))  # wrong rate
    (d / "no" / "d.wav").write_bytes(wav_bytes(np.zeros((16000, 2), np.int16), channels=2))
    (d / "no" / "e.wav").write_bytes(b"")
    (d / "no" / "f.wav").write_bytes(wav_bytes(tone(16000, 300)))
    return d


def test_bad_file_leaves_index_untouched(tmp_path):
    ds, cfg = new_dataset(tmp_path / "p", KWS)
    import_data(ds, cfg, DATA / "speech_commands" / "go", label="go")
    before = ds.index_path.read_bytes()
    with pytest.raises(DataError, match=r"no/c.wav: sample rate 8000 Hz \(from its WAV header\), "
                       r"but data.sample_rate states 16000 Hz \(and 3 more bad file\(s\)\); "
                       r"nothing imported"):
        import_data(ds, cfg, _bad_folder(tmp_path))
    assert ds.index_path.read_bytes() == before
    assert not [p for p in ds.index_path.parent.iterdir()
                if p.name not in ("index.csv", ".index.lock")]          # no temp files left


def test_skip_bad_imports_the_rest(tmp_path):
    ds, cfg = new_dataset(tmp_path / "p", KWS)
    res = import_data(ds, cfg, _bad_folder(tmp_path), skip_bad=True)
    assert sorted(s.id for s in res.added) == ["no/f", "yes/a"]
    reasons = {f.rsplit("/", 1)[-1]: r for f, r in res.skipped}
    assert set(reasons) == {"b.wav", "c.wav", "d.wav", "e.wav"}
    assert "sample rate 8000 Hz (from its WAV header), but data.sample_rate states 16000 Hz" \
        in reasons["c.wav"]
    assert "2 channel(s), data.channels is 1" in reasons["d.wav"]
    assert "empty file" in reasons["e.wav"]
    assert len(DatasetIndex.load(ds.index_path)) == 2


def test_mat_without_variable_and_csv_garbage(tmp_path):
    import scipy.io

    ds, cfg = new_dataset(tmp_path / "p", CUSTOM)
    scipy.io.savemat(tmp_path / "x.mat", {"a": np.arange(4.0), "b": np.arange(4.0)})
    with pytest.raises(DataError, match=r"x.mat: no default variable"):
        import_data(ds, cfg, tmp_path / "x.mat", rate=100)
    (tmp_path / "g.csv").write_text("a,b\n1,2\n3,oops\n")
    with pytest.raises(DataError, match=r"g.csv:3: column 'b': 'oops' is not a number"):
        import_data(ds, cfg, tmp_path / "g.csv", rate=100)
    assert DatasetIndex.load(ds.index_path).samples == []


def test_sticky_splits_on_second_import(tmp_path):
    ds, cfg = new_dataset(tmp_path / "p", KWS)
    import_data(ds, cfg, DATA / "speech_commands" / "yes", label="yes")
    first = {s.group: s.split for s in DatasetIndex.load(ds.index_path) if s.group}
    import_data(ds, cfg, DATA / "speech_commands" / "no", label="no")
    samples = DatasetIndex.load(ds.index_path).samples
    assert_group_disjoint(samples)
    for s in samples:
        if s.group in first:
            assert s.split == first[s.group]


def test_explicit_split_label_and_regex(tmp_path):
    ds, cfg = new_dataset(tmp_path / "p", KWS)
    res = import_data(ds, cfg, DATA / "speech_commands" / "up", label="UP", split="test",
                      group_regex=r"^([0-9a-f]{4})")
    assert {s.label for s in res.added} == {"UP"} and {s.split for s in res.added} == {"test"}
    assert all(len(s.group) == 4 for s in res.added)
    with pytest.raises(DataError, match="needs a capturing group"):
        import_data(ds, cfg, DATA / "speech_commands" / "up", label_regex="up")


def test_index_is_validated(tmp_path):
    ds, cfg = new_dataset(tmp_path / "p", KWS)
    import_data(ds, cfg, DATA / "speech_commands" / "yes" / "022cd682_nohash_0.wav")
    text = ds.index_path.read_text().replace(",train,", ",holdout,")
    text = text.replace(",test,", ",holdout,")
    text = text.replace(",validation,", ",holdout,")
    ds.index_path.write_text(text)
    with pytest.raises(ProjectError, match=r"index.csv:2: split must be one of"):
        DatasetIndex.load(ds.index_path)
    ds.index_path.write_text(text.replace(",holdout,", ",train,").replace(",{},", ',"[1]",'))
    with pytest.raises(ProjectError, match=r"index.csv:2: options must be a JSON object"):
        DatasetIndex.load(ds.index_path)


def test_config_validation(tmp_path):
    proj = init_project(tmp_path / "p", "kws")
    cfg = proj.config_path
    cfg.write_text(cfg.read_text().replace("validation = 0.1", "validation = 0.95"))
    with pytest.raises(ProjectError, match=r"kiloml.toml: data: validation \+ test must be < 1"):
        Project.load(proj.root)
    cfg.write_text(cfg.read_text().replace("validation = 0.95", "validaton = 0.1"))
    # the typo is named (not the "Field required" it causes) with the closest valid key
    with pytest.raises(ProjectError, match=r"kiloml.toml: data.validaton: unknown key; did you "
                                           r"mean 'validation'\?"):
        Project.load(proj.root)
    cfg.write_text(cfg.read_text().replace("validaton = 0.1", "validation = 0.1")
                   .replace("\nwindow_ms =", "\nwindw_ms ="))
    with pytest.raises(ProjectError, match=r"data.windw_ms: unknown key; did you mean "
                                           r"'window_ms'\? \(\+1 more\)"):
        Project.load(proj.root)
    cfg.write_text(cfg.read_text().replace("windw_ms", "window_ms")
                   .replace('pad = "zero"', 'pad = "zeros"'))
    with pytest.raises(ProjectError, match=r"data.pad: 'zeros': Input should be 'zero' or "
                                           r"'drop'"):
        Project.load(proj.root)
    cfg.write_text("[project\n")
    with pytest.raises(ProjectError, match=r"invalid TOML"):
        Project.load(proj.root)
    with pytest.raises(ProjectError, match="already exists"):
        init_project(proj.root, "kws")


@pytest.mark.parametrize("task", ["kws", "motion", "vibration", "anomaly", "custom"])
def test_every_task_roundtrips(tmp_path, task):
    proj = init_project(tmp_path / task, task)
    again = Project.load(proj.root)
    assert again.config == proj.config and again.config.project.task == task
    assert DatasetIndex.load(again.index_path).samples == []


def test_info_reports_missing_and_changed_sources(tmp_path):
    ds, cfg = new_dataset(tmp_path / "p", KWS)
    d = tmp_path / "clips" / "yes"
    d.mkdir(parents=True)
    for i in range(3):
        (d / f"{i}.wav").write_bytes(wav_bytes(tone(16000, 200 + i)))
    import_data(ds, cfg, tmp_path / "clips")
    (d / "0.wav").unlink()
    (d / "1.wav").write_bytes(wav_bytes(tone(16000, 999)))
    probs = " | ".join(dataset_info(ds, cfg)["problems"])
    assert "1 source file(s) missing" in probs and "1 source file(s) changed" in probs
    assert "label 'yes': only 3 window(s)" in probs


def test_windows_pad_and_drop(tmp_path):
    ds, cfg = new_dataset(tmp_path / "w", MOTION)
    import_data(ds, cfg, DATA / "magic_wand" / "ring" / "output_ring_hyw.txt", rate=25,
                label="ring")
    samples = DatasetIndex.load(ds.index_path).of_role("sample")
    wz = make_windows(samples, 3200, 500, "zero")
    wd = make_windows(samples, 3200, 500, "drop")
    assert all(w.length == 80 for w in wz)
    assert len(wd) < len(wz) and all(w.valid == 80 for w in wd)
    short = [s for s in samples if s.length < 80]
    assert short and sum(1 for w in wz if w.valid < 80) == len(short)
    x, wins = load_windows(ds, cfg)
    for i, w in enumerate(wins):
        if w.valid < w.length:
            assert not x[i, w.valid:].any()
    shutil.rmtree(ds.root)


def test_concurrent_import_is_refused(tmp_path):
    import fcntl

    ds, cfg = new_dataset(tmp_path / "p", KWS)
    with open(ds.index_path.parent / ".index.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        with pytest.raises(DataError, match="another kiloml process is importing"):
            import_data(ds, cfg, DATA / "speech_commands" / "yes", label="yes")
    assert len(import_data(ds, cfg, DATA / "speech_commands" / "yes", label="yes").added) == 344
