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
