"""`kiloml data capture` against a pseudo-terminal that replays recorded serial lines."""

from __future__ import annotations

import json
import os
import termios
import threading
import time

import numpy as np

from datahelp import DATA, MOTION, kiloml, new_dataset, one_line_error
from kiloml.data.capture import capture_to_dataset, parse_lines
from kiloml.data.index import DatasetIndex

WAND = DATA / "magic_wand" / "wing" / "output_wing_lsj.txt"


def recorded_lines(n=300) -> list[bytes]:
    """The first n lines of a real magic_wand terminal capture (junk and escape codes
    included), or a synthetic stand-in without ../shared."""
    if WAND.is_file():
        return WAND.read_bytes().splitlines(keepends=True)[:n]
    return [b"\x1b[2Jboot\r\n"] + [f"{i},{-i},{2 * i}\r\n".encode() for i in range(n)]


class Replayer:
    """Writes lines into the master side of a pty, a few at a time, for ``seconds``, once the
    reader has opened the port: pyserial switches the tty to raw mode and then flushes its
    input, so writing starts after ICANON is cleared (plus a margin for the flush)."""

    def __init__(self, lines: list[bytes], seconds: float = 1.2) -> None:
        self.master, self.slave = os.openpty()
        self.port = os.ttyname(self.slave)
        self.lines, self.seconds = lines, seconds
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 20
        while termios.tcgetattr(self.slave)[3] & termios.ICANON:
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)
        time.sleep(0.2)
        end = time.monotonic() + self.seconds
        i = 0
        while time.monotonic() < end and i < len(self.lines):
            os.write(self.master, b"".join(self.lines[i:i + 10]))
            i += 10
            time.sleep(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.thread.join(timeout=5)
        os.close(self.master)
        os.close(self.slave)


def expected_rows(lines: list[bytes]) -> np.ndarray:
    _, rows, _, _ = parse_lines([(0.0, ln.decode("utf-8", "replace")) for ln in lines])
    return np.asarray(rows, np.float32)


def test_capture_api_records_imports_and_indexes(tmp_path):
    ds, cfg = new_dataset(tmp_path / "p", MOTION)
    lines = recorded_lines()
    with Replayer(lines) as r:
        res = capture_to_dataset(ds, cfg, r.port, 115200, "wing", seconds=1.5, rate=25)
    want = expected_rows(lines)
    got = np.loadtxt(res["file"], delimiter=",", skiprows=1, dtype=np.float32)
    assert res["rows"] == len(got) > 50 and res["channels"] == 3 and res["sample_rate"] == 25
    np.testing.assert_array_equal(got, want[:len(got)])        # in order, none lost or made up
    idx = DatasetIndex.load(ds.index_path)
    assert [s.label for s in idx] == ["wing"] and idx.samples[0].length == res["rows"]
    if WAND.is_file():
        assert res["junk_lines"] > 0          # the terminal preamble and line noise
        assert res["measured_rate"] > 0


def test_capture_cli_with_header_and_project_rate(tmp_path):
    p = tmp_path / "p"
    kiloml("init", p, "--task", "motion")
    toml = (p / "kiloml.toml").read_text().replace("[data]\n", "[data]\nsample_rate = 50.0\n")
    (p / "kiloml.toml").write_text(toml)
    lines = [b"garbage \x1b[0m\r\n", b"aX,aY,aZ\r\n"] + \
        [f"{i * 0.5},{-i},{i % 7}\r\n".encode() for i in range(200)] + [b"1,2\r\n", b"nan,1,2\r\n"]
    with Replayer(lines, seconds=1.0) as r:
        out = kiloml("data", "capture", "--port", r.port, "--baud", "9600", "--label", "idle",
                     "--seconds", "2.5", "--project", p, "--json")
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert s["axes"] == ["aX", "aY", "aZ"] and s["rows"] == 200 and s["sample_rate"] == 50
    assert s["junk_lines"] == 3 and s["label"] == "idle"
    info = json.loads(kiloml("data", "info", "--project", p, "--json").stdout)
    assert info["labels"] == {"idle": 1}


def test_capture_errors(tmp_path):
    p = tmp_path / "p"
    kiloml("init", p, "--task", "motion")
    r = kiloml("data", "capture", "--port", tmp_path / "no-such-tty", "--label", "x",
               "--seconds", "0.2", "--rate", "10", "-p", p)
    assert r.returncode == 1 and "cannot open serial port" in one_line_error(r.stderr)
    with Replayer([b"hello\r\n", b"world\r\n"], seconds=0.3) as rp:
        r = kiloml("data", "capture", "--port", rp.port, "--label", "x", "--seconds", "1.0",
                   "--rate", "10", "-p", p)
    assert r.returncode == 1 and "no CSV lines received" in one_line_error(r.stderr)
    assert DatasetIndex.load(p / "dataset" / "index.csv").samples == []
    assert not (p / "data").exists() or not any((p / "data").rglob("*.csv"))
    assert kiloml("data", "capture", "--port", "x", "--label", "x", "--seconds", "0",
                  "-p", p).returncode == 2
