"""``kiloml data stream`` and ``kiloml simulate --stream``: long recordings from a project's
split, and the project's streaming pipeline run over one (kiloml.data.stream builds and reads
them; kiloml.deploy.stream is the streaming pipeline; kiloml.train.streaming scores it).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import numpy as np

from kiloml.data.index import DatasetIndex
from kiloml.data.readers import read_file
from kiloml.data.stream import (make_audio_stream, make_imu_stream, read_truth, write_stream,
                                write_truth)
from kiloml.errors import DataError, UsageError
from kiloml.fileio import atomic_write_text
from kiloml.workflow.features import dsp_block
from kiloml.workflow.project import Project, as_project

SIMULATION = "build/simulate.json"  # the last kiloml simulate --stream (the report shows it)

DEFAULT_MINUTES = 20.0


def build_stream(project: Project | str | Path | None, out: str | Path, truth: str | Path, *,
                 minutes: Optional[float] = None, snr_db: float = 10.0, split: str = "test",
                 seed: int = 0, keywords: int = 50, unknown: int = 50) -> dict:
    """Write a stream of the project's ``split`` to ``out`` and its truth CSV to ``truth``
    (audio projects: keyword and unknown clips over background noise at ``snr_db``; IMU
    projects: the split's recordings end to end). Returns a summary."""
    p = as_project(project)
    if split not in ("train", "validation", "test"):
        raise UsageError(f"--split must be train, validation or test, not {split!r}")
    if Path(out).resolve() == Path(truth).resolve():
        raise UsageError("the stream and its truth file must be different files")
    index = DatasetIndex.load(p.index_path)
    samples = [s for s in index.of_role("sample") if s.split == split]
    if not samples:
        raise DataError(f"{p.index_path}: no samples in the {split} split")
    block = dsp_block(p)
    if block.audio:
        rate = float(p.config.data.sample_rate or samples[0].sample_rate)
        data, res = make_audio_stream(p.dataset, samples, index.of_role("noise"), rate,
                                      minutes=DEFAULT_MINUTES if minutes is None else minutes,
                                      snr_db=snr_db, keywords=keywords, unknown=unknown,
                                      seed=seed)
    else:
        if minutes is not None and not (minutes > 0 and math.isfinite(minutes)):
            raise DataError(f"--minutes must be > 0, not {minutes}")
        data, res = make_imu_stream(p.dataset, samples, minutes=minutes, seed=seed)
    write_stream(out, data, res.sample_rate)
    write_truth(truth, res.truth)
    return {"stream": str(out), "truth": str(truth), "split": split, "seed": seed,
            "snr_db": snr_db if block.audio else None, "audio": block.audio,
            **res.summary()}


def read_stream(path: str | Path, rate: float, channels: Optional[int],
                audio: bool) -> np.ndarray:
    """A stream file as the pipeline takes it: int16 PCM (N,) for audio (a 16-bit mono WAV
    at the project's rate), float32 (N, channels) for IMU (.npy / .csv at the project's
    rate). One clear line for another rate, channel count or an empty stream."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    if audio:
        rec = read_file(p, "wav")
        if rec.raw_int16 is None:
            raise DataError(f"{p}: must be 16-bit PCM WAV")
        x = rec.raw_int16
    else:
        rec = read_file(p, "auto", rate=rate)
        x = rec.data
    if rec.file_rate is not None and abs(rec.file_rate - rate) > 1e-3 * rate:
        raise DataError(f"{p}: sample rate {rec.file_rate:g} Hz, the project's is {rate:g} Hz")
    if channels is not None and x.shape[1] != channels:
        raise DataError(f"{p}: {x.shape[1]} channel(s), the project has {channels}")
    if x.shape[0] == 0:
        raise DataError(f"{p}: the stream is empty (0 samples)")
    return x[:, 0] if audio else x


def load_truth(path: str | Path, duration_s: float) -> list:
    truth = read_truth(path)
    late = [e for e in truth if e.start_s >= duration_s]
    if late:
        raise DataError(f"{path}: event {late[0].label!r} at {late[0].start_s:g} s starts "
                        f"after the stream's end ({duration_s:g} s)")
    return truth


ENGINES = ("python", "c")


def simulate_stream(project: Project | str | Path | None, stream: str | Path,
                    truth: Optional[str | Path] = None, *, board: Optional[str] = None,
                    engine: str = "python", dsp_variant: Optional[str] = None,
                    duty_cycle: bool = False, battery_mah: float = 1000.0,
                    command: str = "kiloml simulate") -> dict:
    """The project's deployed streaming pipeline (settings: ``[stream]``) over a recording:
    every detection, the pipeline's figures and, with a truth CSV, the MLPerf Tiny streaming
    scores (kiloml.train.streaming.score_stream). ``duty_cycle``: also the duty cycle,
    average power and battery days on the board, always on and with the wake gate
    (kiloml.deploy.stream.stream_duty; IMU projects: the motion gate)."""
    import time

    from kiloml.deploy.stream import StreamPipeline
    from kiloml.train.streaming import score_stream
    from kiloml.workflow.deploy import project_spec

    if engine not in ENGINES:
        raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    p = as_project(project)
    # the recording and the truth first: bad input fails before the model is loaded
    block, data = dsp_block(p), p.config.data
    if not (battery_mah > 0 and math.isfinite(battery_mah)):
        raise UsageError(f"--battery must be a capacity in mAh > 0, not {battery_mah:g}")
    spec = None
    rate = float(data.sample_rate or getattr(block.params, "sample_rate", 0) or 0)
    if not rate > 0:    # no stated rate: the trained pipeline's
        spec = project_spec(p, board=board, dsp_variant=dsp_variant, command=command)
        rate = float(spec.sample_rate)
    x = read_stream(stream, rate, 1 if block.audio else data.channels, block.audio)
    duration = len(x) / rate
    events = load_truth(truth, duration) if truth is not None else None
    spec = spec or project_spec(p, board=board, dsp_variant=dsp_variant, command=command)
    settings = p.config.stream
    if not block.audio and x.shape[1] != int(spec.channels):
        raise DataError(f"{stream}: {x.shape[1]} channel(s), the model takes {spec.channels}")
    if len(x) < spec.frames:
        raise DataError(f"{stream}: {duration:g} s is shorter than one "
                        f"{spec.window_ms:g} ms window")
    t0 = time.perf_counter()
    stats: dict = {}
    # the twin's counters (and with --engine python its detections)
    pipe = StreamPipeline(spec, settings)
    if engine == "c":
        dets = c_stream(spec, x, stats)
        pipe.windows = max(0, (len(x) - pipe.window) // pipe.stride + 1)
    else:
        dets = pipe.push(x)
        stats["seen"], stats["passed"] = pipe.wake_stats()
    seconds = time.perf_counter() - t0
    duty = None
    if duty_cycle:
        from kiloml.deploy.stream import stream_duty

        duty = stream_duty(spec, x, board=board, battery_mah=battery_mah, settings=settings)
    wf = pipe.features      # the C keeps frames by the same rule (kiloml.deploy.cstream)
    res = {
        "stream": str(stream), "duration_s": duration, "engine": engine,
        "board": spec.board, "dsp_variant": spec.dsp_variant,
        "settings": settings.model_dump(mode="json"),
        "stride_ms": pipe.stride / float(spec.sample_rate) * 1000.0,
        "windows": pipe.windows,
        "incremental": bool(wf is not None and wf.incremental),
        "incremental_note": (wf.reason if wf is not None else "IMU blocks recompute every "
                             "window") or None,
        "frames_per_stride": (wf.frames_computed / max(pipe.windows, 1)
                              if engine == "python" and wf is not None and hasattr(wf, "nfr")
                              else None),
        "frames_per_window": getattr(wf, "nfr", None),
        "wake": {"enabled": settings.wake, "windows_seen": stats["seen"],
                 "windows_passed": stats["passed"],
                 "passed_fraction": stats["passed"] / max(stats["seen"], 1)},
        "seconds": round(seconds, 3),
        "detections": [d.as_dict() for d in dets],
        "score": score_stream(events, dets, duration) if events is not None else None,
        "duty_cycle": duty,
    }
    # the last simulation, with its truth, for the report's streaming section
    stored = dict(res, truth=[{"label": e.label, "start_s": e.start_s, "end_s": e.end_s}
                              for e in events] if events is not None else None)
    atomic_write_text(p.root / SIMULATION, json.dumps(stored, indent=1))
    return res


def c_stream(spec, x, stats: Optional[dict] = None) -> list:
    """The spec's C package (kiloml.deploy.c) built for the host, its streaming API fed
    ``x`` in pushes of 1,000 samples (frames); the detections (``stats``: the wake gate's
    windows seen and passed)."""
    import tempfile

    from kiloml.deploy.c import deploy_c
    from kiloml.deploy.stream import run_stream_host

    with tempfile.TemporaryDirectory(prefix="kiloml_simulate_c_") as tmp:
        pkg = Path(tmp) / "pkg"
        deploy_c(spec, pkg)
        return run_stream_host(pkg, x, block=1000, stats=stats)


CALIBRATION = "build/calibrate.json"     # the last kiloml simulate --calibrate (the report)
CALIBRATION_STREAM = "build/calibrate"   # its validation stream and truth


def calibrate_stream(project: Project | str | Path | None, target_fa_per_hour: float, *,
                     minutes: float = DEFAULT_MINUTES, snr_db: float = 10.0, seed: int = 1,
                     board: Optional[str] = None, dsp_variant: Optional[str] = None,
                     command: str = "kiloml simulate --calibrate") -> dict:
    """Choose RecognizeCommands' settings for the project like Edge Impulse's performance
    calibration: a stream of the **validation** split (never the test split: the test
    stream then measures the chosen settings honestly) at ``snr_db`` with 2.5 keywords and
    2.5 unknown words a minute (MLPerf's 50 + 50 in 20 minutes), the deployed model's
    window scores computed once by the streaming twin (with the project's slices per window
    and wake gate), every point of kiloml.train.streaming.CALIBRATION_GRID scored on them,
    and the point with the fewest misses at or under ``target_fa_per_hour`` written into
    kiloml.toml's ``[stream]``. Writes ``build/calibrate.json`` (every DET point, the choice)
    either way; kiloml.toml only when a point reaches the target. The stream draws only
    validation clips; a stream longer than the split can fill repeats them (each repeat at
    another time, over another stretch of noise) and ``stream_notes`` says so."""
    from kiloml.deploy.stream import StreamPipeline
    from kiloml.errors import KilomlError
    from kiloml.train.streaming import CALIBRATION_GRID, choose_setting, sweep_settings
    from kiloml.workflow.deploy import project_spec

    if not (target_fa_per_hour >= 0 and math.isfinite(target_fa_per_hour)):
        raise UsageError(f"--target-fa-per-hour must be a rate >= 0, not {target_fa_per_hour:g}")
    if not (minutes > 0 and math.isfinite(minutes)):
        raise UsageError(f"--minutes must be > 0, not {minutes:g}")
    if not math.isfinite(snr_db):
        raise UsageError(f"--snr must be a number of dB, not {snr_db:g}")
    if seed < 0:
        raise UsageError(f"--seed must be >= 0, not {seed}")
    p = as_project(project)
    block = dsp_block(p)
    if not block.audio:
        raise UsageError("--calibrate builds a stream of keywords from the validation split: "
                         "audio projects only")
    folder = p.root / CALIBRATION_STREAM
    folder.mkdir(parents=True, exist_ok=True)
    wav, csv = folder / "validation.wav", folder / "validation.csv"
    # MLPerf's density: 50 keywords and 50 unknown words in 20 minutes
    words = max(2, int(round(minutes * 2.5)))
    made = build_stream(p, wav, csv, minutes=minutes, snr_db=snr_db, split="validation",
                        seed=seed, keywords=words, unknown=words)
    spec = project_spec(p, board=board, dsp_variant=dsp_variant, command=command)
    rate = float(spec.sample_rate)
    x = read_stream(wav, rate, 1, True)
    duration = len(x) / rate
    truth = load_truth(csv, duration)
    base = p.config.stream
    pipe = StreamPipeline(spec, base)
    ends, scores = pipe.window_scores(x)
    points = sweep_settings(spec.labels, ends / rate, [int(e * 1000 // rate) for e in ends],
                            scores, truth, duration, base=base, grid=CALIBRATION_GRID)
    best = choose_setting(points, target_fa_per_hour)
    keys = list(CALIBRATION_GRID[0])
    chosen = None if best is None else {k: points[best][k] for k in keys}
    res = {"command": command, "target_fa_per_hour": target_fa_per_hour,
           "split": "validation", "stream": str(wav), "truth": str(csv), "seed": seed,
           "snr_db": snr_db, "minutes": minutes, "duration_s": duration,
           "labels": made["labels"], "stream_notes": made["notes"], "board": spec.board,
           "dsp_variant": spec.dsp_variant, "windows": pipe.windows,
           "windows_scored": int(len(ends)),
           "previous": {k: base.model_dump(mode="json")[k] for k in keys},
           "points": points, "chosen_index": best, "chosen": chosen,
           "chosen_point": None if best is None else points[best]}
    atomic_write_text(p.root / CALIBRATION, json.dumps(res, indent=1))
    if chosen is None:
        low = min(points, key=lambda q: q["fa_per_hour"])
        raise KilomlError(f"{p.root / CALIBRATION}: no setting of the {len(points)} tried "
                          f"reaches {target_fa_per_hour:g} false accepts per hour on the "
                          f"validation stream (the lowest: {low['fa_per_hour']:.1f}); "
                          "kiloml.toml unchanged")
    p.config.stream = base.model_copy(update=chosen)
    p.save()
    return res
