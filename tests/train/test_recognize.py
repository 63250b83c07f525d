"""RecognizeCommands: TFLM micro_speech's smoothing, threshold, suppression and minimum
count; unknown / silence never fire."""

from kiloml.train.streaming import RecognizeCommands, StreamSettings

LABELS = ["_silence_", "_unknown_", "yes", "no"]


def scores(top: int, value: int = 250) -> list[int]:
    s = [0, 0, 0, 0]
    s[top] = value
    return s


def run(rc, seq, step_ms=250):
    return [rc.detect(s, (i + 1) * step_ms) for i, s in enumerate(seq)]


def test_minimum_count_and_quarter_window():
    rc = RecognizeCommands(LABELS)
    out = run(rc, [scores(2)] * 4)
    # 1st and 2nd: fewer than 3 results; 3rd: 3 results spanning 500 ms >= 250: fires
    assert out[:2] == [None, None] and out[2] == (2, 250) and out[3] is None


def test_average_must_exceed_the_threshold():
    rc = RecognizeCommands(LABELS)
    assert all(d is None for d in run(rc, [scores(2, 200)] * 6))      # 200 is not > 200
    rc = RecognizeCommands(LABELS)
    out = run(rc, [scores(2, 255), scores(2, 255), scores(2, 80), scores(2, 255)])
    assert out[2] is None and out[3] == (2, (255 * 3 + 80) // 4)  # 196, then 211


def test_suppression_after_a_detection_and_a_new_label_fires_at_once():
    st = StreamSettings(average_window_ms=250, minimum_count=1, suppression_ms=1500)
    rc = RecognizeCommands(LABELS, st)
    out = run(rc, [scores(2)] * 10)
    fired = [i for i, d in enumerate(out) if d]
    # the first result alone spans 0 ms (< a quarter window): the 2nd (500 ms) fires; the
    # next is more than 1500 ms later: 2250 ms
    assert fired == [1, 8]
    rc = RecognizeCommands(LABELS, st)
    out = run(rc, [scores(2), scores(2), scores(3), scores(3)])
    assert out == [None, (2, 250), None, (3, 250)]


def test_unknown_and_silence_never_fire_and_do_not_suppress():
    st = StreamSettings(average_window_ms=250, minimum_count=1)
    rc = RecognizeCommands(LABELS, st)
    out = run(rc, [scores(1), scores(1), scores(0), scores(2), scores(2)])
    assert out == [None, None, None, None, (2, 250)]
    # unknown wins in between (a command, not an event): the keyword differs from it and
    # fires again within the suppression time
    rc = RecognizeCommands(LABELS, st)
    out = run(rc, [scores(2), scores(2), scores(1), scores(1), scores(2), scores(2)])
    assert out == [None, (2, 250), None, None, None, (2, 250)]


def test_old_results_leave_the_window():
    st = StreamSettings(average_window_ms=500, minimum_count=2, suppression_ms=0)
    rc = RecognizeCommands(LABELS, st)
    seq = [scores(3, 10)] * 4 + [scores(2)] * 3
    out = run(rc, seq)
    # 500 ms window = 3 results: "yes" averages 83, 166, then 250 (> 200) at the 7th
    assert [i for i, d in enumerate(out) if d] == [6]


def test_calibration_sweep_and_choice_by_hand():
    """Windows every 250 ms over 60 s: "yes" scores 150 from 2.0 to 2.75 s (a keyword at
    1.8-2.6 s) and 230 from 10.0 to 10.5 s (no keyword there: a false accept), "_unknown_"
    20 in both bursts and 255 elsewhere. The points checked are worked out by hand with
    RecognizeCommands' rules (in the comments)."""
    from kiloml.data.stream import TruthEvent
    from kiloml.train.streaming import CALIBRATION_GRID, choose_setting, sweep_settings

    labels = ["_unknown_", "yes"]
    ends_ms = list(range(1000, 60001, 250))
    rows = []
    for t in ends_ms:
        yes = 150 if 2000 <= t <= 2750 else 230 if 10000 <= t <= 10500 else 0
        rows.append([20 if yes else 255, yes])
    truth = [TruthEvent("yes", 1.8, 2.6), TruthEvent("_unknown_", 20.0, 21.0)]
    pts = sweep_settings(labels, [t / 1000 for t in ends_ms], ends_ms, rows, truth, 60.0)
    assert len(pts) == len(CALIBRATION_GRID) == 108
    at = {(q["average_window_ms"], q["detection_threshold"], q["suppression_ms"],
           q["minimum_count"]): q for q in pts}
    # 500 ms (3 results), min count 1: the 150 burst averages 150 at 2.5 s (> 100, > 130,
    # not > 160); the 230 burst 153 at 10.25 s and 230 at 10.5 s
    q = at[(500.0, 100, 1000.0, 1)]
    assert (q["hits"], q["false_accepts"], q["targets"]) == (1, 1, 1)
    assert (at[(500.0, 130, 1000.0, 1)]["hits"], at[(500.0, 160, 1000.0, 1)]["hits"]) == (1, 0)
    assert at[(500.0, 200, 1500.0, 3)]["false_accepts"] == 1       # 230 > 200, 3 results
    assert at[(500.0, 200, 1500.0, 3)]["misses"] == 1
    # 1000 ms (5 results): at 2.75 s yes averages 600 / 5 = 120 (> 100, not > 130),
    # _unknown_ (255 + 4 x 20) / 5 = 67
    assert at[(1000.0, 100, 1000.0, 1)]["hits"] == 1
    assert at[(1000.0, 130, 1000.0, 1)]["hits"] == 0
    # each point equals RecognizeCommands run with its settings (the sweep reuses no state)
    for g, q in zip(CALIBRATION_GRID, pts):
        rc = RecognizeCommands(labels, StreamSettings(**g))
        n = sum(rc.detect(r, t) is not None for t, r in zip(ends_ms, rows))
        assert q["detections"] == n
    # the choice: fewest misses at <= 60 FA/h (1 FA in a minute is 60 FA/h), then fewer FA
    best = choose_setting(pts, 60.0)
    assert pts[best]["misses"] == 0 and pts[best] is pts[min(
        i for i, p in enumerate(pts) if p["misses"] == 0)]
    assert choose_setting(pts, 59.0) is not None         # points without the false accept
    assert pts[choose_setting(pts, 59.0)]["false_accepts"] == 0
    none = [dict(p, fa_per_hour=99.0) for p in pts]
    assert choose_setting(none, 10.0) is None
