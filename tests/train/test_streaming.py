"""Streaming scoring (MLPerf Tiny streaming wakeword rules) on hand-made truth and
detections."""

import pytest

from kiloml.data.stream import TruthEvent
from kiloml.errors import DataError
from kiloml.train.streaming import score_stream

TRUTH = [TruthEvent("yes", 10.0, 11.0), TruthEvent("_unknown_", 20.0, 21.0),
         TruthEvent("no", 30.0, 31.0), TruthEvent("yes", 40.0, 41.0)]
HOUR = 3600.0


def test_hits_inside_the_window_up_to_one_second_after_the_end():
    r = score_stream(TRUTH, [(10.0, "yes"), (32.0, "no"), (42.0, "yes")], HOUR)
    assert (r["targets"], r["hits"], r["misses"], r["false_accepts"]) == (3, 3, 0, 0)
    assert r["miss_rate"] == 0.0 and r["fa_per_hour"] == 0.0


def test_just_outside_the_window_is_a_miss_and_a_false_accept():
    r = score_stream(TRUTH, [(9.99, "yes"), (32.01, "no")], HOUR)
    assert r["hits"] == 0 and r["misses"] == 3 and r["false_accepts"] == 2
    assert r["per_label"]["yes"]["false_accepts"] == 1
    assert r["per_label"]["no"]["misses"] == 1


def test_wrong_label_in_a_keyword_window_is_a_false_accept():
    r = score_stream(TRUTH, [(10.5, "no")], HOUR)
    assert r["hits"] == 0 and r["false_accepts"] == 1
    assert r["per_label"]["no"]["false_accepts"] == 1
    assert r["per_label"]["yes"]["misses"] == 2


def test_repeated_detections_of_a_hit_are_not_false_accepts():
    r = score_stream(TRUTH, [(10.2, "yes"), (10.7, "yes"), (11.9, "yes")], HOUR)
    assert r["hits"] == 1 and r["false_accepts"] == 0


def test_false_accepts_are_debounced_over_one_second():
    dets = [(100.0, "yes"), (100.5, "no"), (100.99, "yes"), (101.0, "yes"), (103.0, "up")]
    r = score_stream(TRUTH, dets, 1800.0)
    # 100.0 counts; 100.5 and 100.99 are within 1 s of it; 101.0 is 1 s later: counts; 103.0
    assert r["false_accepts"] == 3
    assert r["fa_per_hour"] == pytest.approx(6.0)


def test_unknown_words_are_not_targets_and_detections_on_them_are_false_accepts():
    r = score_stream(TRUTH, [(20.5, "yes")], HOUR)
    assert r["targets"] == 3 and r["false_accepts"] == 1
    assert "_unknown_" not in r["per_label"]


def test_one_detection_hits_one_target_and_order_does_not_matter():
    truth = [TruthEvent("go", 5.0, 6.0), TruthEvent("go", 6.5, 7.5)]
    # 6.8 is in both windows: it hits the earlier; the later one needs its own detection
    r1 = score_stream(truth, [(6.8, "go")], HOUR)
    assert r1["hits"] == 1 and r1["per_label"]["go"]["misses"] == 1
    r2 = score_stream(truth, [{"t_s": 8.0, "label": "go"}, {"t_s": 6.8, "label": "go"}], HOUR)
    assert r2["hits"] == 2 and r2["misses"] == 0 and r2["false_accepts"] == 0


def test_no_targets_and_bad_duration():
    r = score_stream([TruthEvent("_unknown_", 1.0, 2.0)], [], 60.0)
    assert r["targets"] == 0 and r["miss_rate"] is None and r["false_accepts"] == 0
    with pytest.raises(DataError):
        score_stream(TRUTH, [], 0.0)
