"""The Arduino library: no Arduino core can be installed here, so the library's ``src/`` is
built with arm-none-eabi-gcc and the Nano 33 BLE Sense's flags, the example sketch is compiled
as C++ (arm-none-eabi-g++ and the host g++) against small stub headers written here (declaring
only what the sketch uses), ``library.properties`` and the layout are checked against the rules
of the Arduino Library Specification 1.5 written out below, and the sketch runs on the host with
stub implementations that feed it real microphone / IMU data: what it prints is what
``<name>_classify`` gives on the windows a device would have seen."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import deployhelp as H  # noqa: E402

from kiloml import __version__  # noqa: E402
from kiloml.codegen.host import find_cc  # noqa: E402
from kiloml.deploy import DeploySpec, deploy_arduino, run_host  # noqa: E402
from kiloml.dsp import make_block  # noqa: E402
from kiloml.errors import KilomlError  # noqa: E402

NANO = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=softfp", "-mfpu=fpv4-sp-d16"]
CXX = ["-std=gnu++17", "-Wall", "-Wextra", "-Wconversion", "-Werror", "-O2"]

# --------------------------------------------------------------- the specification's rules
# Arduino Library Specification 1.5 (rev. 2.2), library.properties and layout.
REQUIRED = ("name", "version", "author", "maintainer", "sentence", "paragraph", "category",
            "url", "architectures")
OPTIONAL = ("depends", "dot_a_linkage", "includes", "precompiled", "ldflags")
CATEGORIES = {"Display", "Communication", "Signal Input/Output", "Sensors", "Device Control",
              "Timing", "Data Storage", "Data Processing", "Other"}


def check_library(root: Path) -> dict[str, str]:
    """Every rule of the specification this library can break; returns the properties."""
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}", root.name)   # root folder name
    props: dict[str, str] = {}
    for line in (root / "library.properties").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep == "=" and key == key.strip() and key not in props, line
        assert value == value.strip() and "\t" not in value, line
        props[key] = value
    assert set(props) <= set(REQUIRED) | set(OPTIONAL), sorted(props)
    for key in REQUIRED:
        assert props.get(key), f"library.properties: {key} is required"
    name = props["name"]
    assert len(name) <= 63 and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 _.\-]*", name)
    assert re.search(r"[A-Za-z]", name) and not name.endswith(" ")
    assert not name.startswith("Arduino")                   # reserved for Arduino's own
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?", props["version"])  # semver (1.2 is accepted)
    assert props["category"] in CATEGORIES
    assert re.fullmatch(r"https?://\S+", props["url"])
    arch = props["architectures"]
    assert arch == "*" or re.fullmatch(r"[a-z0-9_]+(,[a-z0-9_]+)*", arch), arch
    for dep in props.get("depends", "").split(","):
        assert not dep or re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 _.\-]*", dep.strip())
    src = root / "src"
    assert src.is_dir()                                      # 1.5 (recursive) layout
    assert not list(root.glob("*.c")) and not list(root.glob("*.h"))
    assert not (root / "utility").exists()
    for inc in props.get("includes", "").split(","):
        assert (src / inc.strip()).is_file(), inc
    examples = sorted((root / "examples").iterdir())
    assert examples
    for ex in examples:
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}", ex.name)
        assert (ex / f"{ex.name}.ino").is_file()             # sketch folder = sketch name
    return props


# --------------------------------------------------------------- stub headers

STUB_ARDUINO = """#ifndef KML_TEST_ARDUINO_H
#define KML_TEST_ARDUINO_H
#include <stddef.h>
#include <stdint.h>
class HardwareSerialStub {
public:
    void begin(unsigned long baud);
    explicit operator bool() const;
    size_t print(const char *s);
    size_t print(char c);
    size_t print(int v);
    size_t println(const char *s);
    size_t println(int v);
    size_t println(double v, int digits = 2);
    int available(void);
    int read(void);
};
extern HardwareSerialStub Serial;
unsigned long millis(void);
unsigned long micros(void);
void noInterrupts(void);
void interrupts(void);
#endif
"""
STUB_PDM = """#ifndef KML_TEST_PDM_H
#define KML_TEST_PDM_H
#include <stddef.h>
class PDMClass {
public:
    void onReceive(void (*function)(void));
    int begin(int channels, int sampleRate);
    int available(void);
    int read(void *buffer, size_t size);
};
extern PDMClass PDM;
#endif
"""
STUB_LSM9DS1 = """#ifndef KML_TEST_LSM9DS1_H
#define KML_TEST_LSM9DS1_H
class LSM9DS1Class {
public:
    int begin(void);
    int accelerationAvailable(void);
    int readAcceleration(float &x, float &y, float &z);
    int gyroscopeAvailable(void);
    int readGyroscope(float &x, float &y, float &z);
};
extern LSM9DS1Class IMU;
#endif
"""
# The simulated board: Serial to stdout; PDM delivers the int16 stream of argv[1] in chunks of
# 256 samples, calling the sketch's callback and then loop() after each (mode "a"), or after
# every third only (mode "o": a loop() too slow for the microphone); the IMU delivers the
# float frames (x, y, z) of argv[1] one per loop(), the clock advancing by argv[2] us each time.
SIMULATOR = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "Arduino.h"
#include "PDM.h"
#include "Arduino_LSM9DS1.h"

void setup();
void loop();

HardwareSerialStub Serial;
PDMClass PDM;
LSM9DS1Class IMU;
static unsigned long now_us = 0;
static void (*pdm_callback)(void) = 0;
static const unsigned char *pending = 0;
static size_t pending_bytes = 0;

void HardwareSerialStub::begin(unsigned long) {}
HardwareSerialStub::operator bool() const { return true; }
size_t HardwareSerialStub::print(const char *s) { return (size_t)printf("%s", s); }
size_t HardwareSerialStub::print(char c) { return (size_t)printf("%c", c); }
size_t HardwareSerialStub::print(int v) { return (size_t)printf("%d", v); }
size_t HardwareSerialStub::println(int v) { return (size_t)printf("%d\n", v); }
size_t HardwareSerialStub::println(const char *s) { return (size_t)printf("%s\n", s); }
size_t HardwareSerialStub::println(double v, int digits) {
    return (size_t)printf("%.*f\n", digits, v);
}
unsigned long millis(void) { return now_us / 1000; }
unsigned long micros(void) { return now_us; }
void noInterrupts(void) {}
void interrupts(void) {}

void PDMClass::onReceive(void (*function)(void)) { pdm_callback = function; }
int PDMClass::begin(int channels, int rate) { return channels == 1 && rate > 0; }
int PDMClass::available(void) { return (int)pending_bytes; }
int PDMClass::read(void *buffer, size_t size) {
    size_t n = size < pending_bytes ? size : pending_bytes;
    memcpy(buffer, pending, n);
    pending += n;
    pending_bytes -= n;
    return (int)n;
}

static const float *frame = 0;
int LSM9DS1Class::begin(void) { return 1; }
int LSM9DS1Class::accelerationAvailable(void) { return frame != 0; }
int LSM9DS1Class::readAcceleration(float &x, float &y, float &z) {
    x = frame[0]; y = frame[1]; z = frame[2];
    frame = 0;
    return 1;
}
int LSM9DS1Class::gyroscopeAvailable(void) { return 0; }
int LSM9DS1Class::readGyroscope(float &x, float &y, float &z) { x = y = z = 0; return 1; }

int main(int argc, char **argv) {
    if (argc != 4) { return 2; }
    FILE *f = fopen(argv[1], "rb");
    if (!f) { return 3; }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *data = (unsigned char *)malloc((size_t)size);
    if (fread(data, 1, (size_t)size, f) != (size_t)size) { return 4; }
    fclose(f);
    unsigned long period = strtoul(argv[2], 0, 10);
    setup();
    if (argv[3][0] == 'a' || argv[3][0] == 'o') {
        long k = 0;
        for (long at = 0; at + 512 <= size; at += 512, ++k) {
            pending = data + at;
            pending_bytes = 512;
            now_us += 16000;
            pdm_callback();
            if (argv[3][0] == 'a' || k % 3 == 2) {  // 'o': loop() too slow, 1 call in 3
                loop();
            }
        }
        loop();
    } else {
        for (long at = 0; at + 12 <= size; at += 12) {
            now_us += period;
            frame = (const float *)(const void *)(data + at);
            loop();
        }
    }
    free(data);
    return 0;
}
"""


def write_stubs(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "Arduino.h").write_text(STUB_ARDUINO)
    (d / "PDM.h").write_text(STUB_PDM)
    (d / "Arduino_LSM9DS1.h").write_text(STUB_LSM9DS1)
    return d


@pytest.fixture(scope="module")
def libraries(tmp_path_factory):
    """Arduino libraries for the Nano 33 BLE Sense (KWS q15 audio, spectral IMU)."""
    root = tmp_path_factory.mktemp("arduino")
    return {"kws": deploy_arduino(H.kws_spec("q15"), root / "Kws").path,
            "wand": deploy_arduino(H.imu_spec(), root / "Wand").path}


def _sketch(lib: Path) -> Path:
    return next(lib.glob("examples/*/*.ino"))


# --------------------------------------------------------------- (a) src builds for the board


@pytest.mark.parametrize("which", ["kws", "wand"])
def test_src_builds_for_the_nano_33_ble_sense(libraries, which, tmp_path):
    lib = libraries[which]
    sources = sorted((lib / "src").rglob("*.c"))
    assert sources
    # Arduino puts only src/ on the include path
    H.compile_objects(H.need("arm-none-eabi-gcc"), NANO, sources, [lib / "src"], tmp_path)


# --------------------------------------------------------------- (b) the sketch compiles


@pytest.mark.parametrize("which", ["kws", "wand"])
@pytest.mark.parametrize("compiler", ["arm-none-eabi-g++", "g++"])
def test_sketch_compiles_as_cpp(libraries, which, compiler, tmp_path):
    lib = libraries[which]
    stubs = write_stubs(tmp_path / "stubs")
    cpp = tmp_path / "sketch.cpp"
    cpp.write_text(_sketch(lib).read_text())
    flags = NANO if compiler.startswith("arm") else []
    cmd = [H.need(compiler), *flags, *CXX, f"-I{stubs}", f"-I{lib / 'src'}", "-c", str(cpp),
           "-o", str(tmp_path / "sketch.o")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr


@pytest.mark.parametrize("compiler", ["arm-none-eabi-g++", "g++"])
def test_personalize_sketch_takes_serial_commands_and_compiles(compiler, tmp_path):
    """With [personalize] the IMU example stores the last window (add_window), updates and
    resets on Serial commands; it compiles against the stubs, the library's src/ for the board
    (tests/deploy/test_personalize_classify.py runs the library's C itself)."""
    from kiloml.deploy.personalize import Settings

    spec = dataclasses.replace(H.imu_spec(), personalize=Settings())
    lib = deploy_arduino(spec, tmp_path / "Wand").path
    ino = _sketch(lib).read_text()
    for call in ("wand_personalize_add_window(window, c - '0')", "wand_personalize_update()",
                 "wand_personalize_reset()", "personalize_commands();"):
        assert call in ino
    assert "wand_personalize_add_window" in (lib / "README.md").read_text()
    stubs = write_stubs(tmp_path / "stubs")
    cpp = tmp_path / "sketch.cpp"
    cpp.write_text(ino)
    flags = NANO if compiler.startswith("arm") else []
    cmd = [H.need(compiler), *flags, *CXX, f"-I{stubs}", f"-I{lib / 'src'}", "-c", str(cpp),
           "-o", str(tmp_path / "sketch.o")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    plain = deploy_arduino(H.imu_spec(), tmp_path / "Plain").path
    assert "personalize" not in _sketch(plain).read_text()


# --------------------------------------------------------------- (c) the specification


@pytest.mark.parametrize("which", ["kws", "wand"])
def test_library_follows_the_specification(libraries, which):
    lib = libraries[which]
    props = check_library(lib)
    name = "kws" if which == "kws" else "wand"
    assert props["name"] == ("Kws" if which == "kws" else "Wand")
    assert props["architectures"] == "mbed_nano"
    assert props["includes"] == f"{name}.h"
    assert props.get("depends") == (None if which == "kws" else "Arduino_LSM9DS1")
    assert sorted(p.name for p in (lib / "src").iterdir() if p.is_file()) == \
        [f"{name}.c", f"{name}.h"]                          # one public header at the top
    assert (lib / "src" / name / f"{name}_model.c").is_file()
    sketch = _sketch(lib)
    assert sketch.name == f"{props['name']}Continuous.ino"
    text = sketch.read_text()
    assert f"#include <{name}.h>" in text
    if which == "kws":
        for call in ("PDM.onReceive(", "PDM.begin(1, KWS_SAMPLE_RATE_HZ)"):
            assert call in text
    else:
        for call in ("IMU.begin()", "IMU.accelerationAvailable()", "IMU.readAcceleration("):
            assert call in text
    assert "Serial.print(" in text
    first = (lib / "library.properties").read_text().splitlines()[0]
    assert first == f"# Generated by kiloml {__version__} -- do not edit. command: {H.COMMAND}"
    meta = json.loads((lib / "extras" / f"{name}.json").read_text())
    assert meta["format"] == "arduino" and meta["build"]["board_kernels"] == "armv7em"


def test_a_library_for_the_pico_targets_mbed_rp2040_with_portable_kernels(tmp_path):
    lib = deploy_arduino(H.imu_spec(board="pico"), tmp_path / "Wand").path
    props = check_library(lib)
    assert props["architectures"] == "mbed_rp2040"
    assert not (lib / "src" / "wand" / "kml_arm.h").exists()


# --------------------------------------------------------------- the sketch running


def _simulate(lib: Path, stream: np.ndarray, mode: str, period_us: int, tmp_path: Path) -> list:
    """Build the sketch + the library (host gcc) + the simulated board; run it on ``stream``;
    the printed lines as (label, score text)."""
    stubs = write_stubs(tmp_path / "stubs")
    objs = tmp_path / "obj"
    sim = tmp_path / "sim.cpp"
    sim.write_text(SIMULATOR)
    cpp = tmp_path / "sketch.cpp"
    cpp.write_text(_sketch(lib).read_text())
    exe = tmp_path / "board"
    H.compile_objects(find_cc(), ["-fsanitize=address,undefined"],
                      sorted((lib / "src").rglob("*.c")), [lib / "src"], objs)
    cmd = [H.need("g++"), *CXX, "-fsanitize=address,undefined", f"-I{stubs}",
           f"-I{lib / 'src'}", str(cpp), str(sim), *map(str, sorted(objs.glob("*.o"))),
           "-lm", "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    data = tmp_path / "stream.bin"
    data.write_bytes(np.ascontiguousarray(stream).tobytes())
    r = subprocess.run([str(exe), str(data), str(period_us), mode], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return [tuple(line.split()) for line in r.stdout.splitlines()]


def _double_buffer(chunks: int, every: int) -> tuple[list[int], int]:
    """The chunks a double-buffered callback keeps (in push order) when loop() runs after
    every ``every``-th callback and pushes all full blocks; and the overruns."""
    filled, fill, push, kept, overruns = [None, None], 0, 0, [], 0
    for k in range(chunks):
        if filled[fill] is None:
            filled[fill], fill = k, fill ^ 1
        else:
            overruns += 1
        if k % every == every - 1 or k == chunks - 1:
            while filled[push] is not None:
                kept.append(filled[push])
                filled[push], push = None, push ^ 1
    return kept, overruns


@pytest.mark.parametrize("variant", ["q15", "f32"])
def test_microphone_sketch_streams_double_buffered_and_reports_overruns(variant, tmp_path):
    """Clips streamed through PDM in 256-sample chunks into the streaming API: with loop()
    keeping up, the sketch prints the Python twin's detections of the whole stream; with
    loop() running after one callback in three, the callback finds no free block for one
    chunk in three, says so ("overrun N lost M"), and the detections are the twin's on the
    audio that was kept."""
    from kiloml.deploy.stream import run_stream
    from kiloml.train.streaming import StreamSettings

    st = StreamSettings(slices_per_window=5, average_window_ms=400, detection_threshold=40,
                        suppression_ms=300, minimum_count=1)
    spec = dataclasses.replace(H.kws_spec(variant, board="pico"), stream=st)
    lib = deploy_arduino(spec, tmp_path / "Kws").path
    stream = H.speech_windows()[[2, 5, 9, 1, 7, 3]].reshape(-1)

    def events(x):
        return [(d.label, str(d.score), f"{d.sample / 16000:.3f}")
                for d in run_stream(spec, x, st)[0]]

    (tmp_path / "a").mkdir()
    (tmp_path / "o").mkdir()
    printed = _simulate(lib, stream, "audio", 0, tmp_path / "a")
    assert printed == events(stream) and len(printed) >= 3
    chunks = stream[:len(stream) // 256 * 256].reshape(-1, 256)
    kept, overruns = _double_buffer(len(chunks), 3)
    assert overruns > 0
    printed = _simulate(lib, stream, "overrun", 0, tmp_path / "o")
    reports = [p for p in printed if p[0] == "overrun"]
    assert reports[-1] == ("overrun", str(overruns), "lost", str(256 * overruns))
    assert [p for p in printed if p[0] != "overrun"] == events(chunks[kept].reshape(-1))


def test_imu_sketch_classifies_the_windows_a_device_sees(tmp_path):
    """Real gestures one frame per 40 ms: a first window at 50 frames, then every 12."""
    lib = deploy_arduino(H.imu_spec(board="pico"), tmp_path / "Wand").path
    frames = H.imu_windows().reshape(-1, 3)[:260]
    printed = _simulate(lib, frames, "imu", 40000, tmp_path)
    windows, since = [], 0
    for k in range(1, len(frames) + 1):
        since += 1
        if since >= 12 and k >= H.IMU_FRAMES:
            since = 0
            windows.append(frames[k - H.IMU_FRAMES:k])
    want = run_host(lib, np.stack(windows), features=False)
    assert len(printed) == len(windows) >= 10
    assert [p[0] for p in printed] == [H.IMU_LABELS[k] for k in want.predictions]
    assert [p[1] for p in printed] == [f"{want.scores[i, k]:.3f}"
                                       for i, k in enumerate(want.predictions)]


# --------------------------------------------------------------- refusals


def test_refusals(tmp_path):
    spec = H.imu_spec()
    with pytest.raises(KilomlError, match="reserved for Arduino"):
        deploy_arduino(spec, tmp_path / "a", library="ArduinoWand")
    with pytest.raises(KilomlError, match="at least one letter"):
        deploy_arduino(spec, tmp_path / "a", library="123")
    with pytest.raises(KilomlError, match="library folder name"):
        deploy_arduino(spec, tmp_path / "my lib")
    with pytest.raises(KilomlError, match="not semver"):
        deploy_arduino(spec, tmp_path / "a", version="r5")
    with pytest.raises(KilomlError, match="category"):
        deploy_arduino(spec, tmp_path / "a", category="Machine Learning")
    labels = [f"v{i}" for i in range(40)]
    four = DeploySpec("four", H.identity_graph(40, 0.5, 0), make_block("raw",
                      params=dict(flatten=True)), 10, 4, 10.0, 1000.0, labels)
    with pytest.raises(KilomlError, match="takes 4 channels"):
        deploy_arduino(four, tmp_path / "a")
    mfcc = make_block("mfcc", params=dict(sample_rate=8000.0, num_coefficients=4,
                                          num_filters=10, high_hz=3000.0))
    shape = mfcc.output_shape(8000)
    slow = DeploySpec("slow", H.identity_graph(int(np.prod(shape)), 0.5, 0), mfcc, 8000, 1,
                      8000.0, 1000.0, [f"c{i}" for i in range(int(np.prod(shape)))])
    with pytest.raises(KilomlError, match="16000 or 41667 Hz; this model expects 8000 Hz"):
        deploy_arduino(slow, tmp_path / "a")
    assert not (tmp_path / "a").exists()
    lib = deploy_arduino(spec, tmp_path / "Wand").path
    with pytest.raises(KilomlError, match="armv7em kernels, which do not build for the host"):
        run_host(lib, H.imu_windows()[:1])


def test_imu_sketch_of_a_two_sensor_project_uses_one_buffer_per_sensor(tmp_path):
    """Single-board fusion (accelerometer + gyroscope as two sensors): the sketch passes one
    buffer per sensor to <name>_classify_sensors; the simulated board's gyroscope never has
    data, so every window is classified with the gyroscope missing (zeros) and says so."""
    from dataclasses import replace

    from kiloml.dsp.apply import apply_block
    from kiloml.train.normalize import Normalizer

    block = H.imu_block()
    x = H.imu_windows(per_label=6)
    x6 = np.concatenate([x, x[:, :, ::-1] * 0.5], axis=2)
    norm = Normalizer.fit("feature", apply_block(block, x6))
    g = H.dense_graph(norm(apply_block(block, x6)), len(H.IMU_LABELS))
    spec = replace(H.imu_spec(board="pico"), graph=g, channels=6, normalizer=norm.state(),
                   sensors=(("accel", 3), ("gyro", 3)))
    lib = deploy_arduino(spec, tmp_path / "Fused").path
    sketch = _sketch(lib).read_text()
    assert "wand_classify_sensors(accel_frames, gyro_frames_age <" in sketch
    frames = H.imu_windows().reshape(-1, 3)[:160]
    printed = _simulate(lib, frames, "imu", 40000, tmp_path)
    windows, since = [], 0
    for k in range(1, len(frames) + 1):
        since += 1
        if since >= 12 and k >= H.IMU_FRAMES:
            since = 0
            w = np.zeros((H.IMU_FRAMES, 6), np.float32)
            w[:, :3] = frames[k - H.IMU_FRAMES:k]
            windows.append(w)
    want = run_host(lib, np.stack(windows), features=False)
    results = printed[0::2]
    assert len(results) == len(windows) >= 5
    assert all(" ".join(m) == "(gyro missing: classified with its channels as zeros)"
               for m in printed[1::2])
    assert [p[0] for p in results] == [H.IMU_LABELS[k] for k in want.predictions]
    assert [p[1] for p in results] == [f"{want.scores[i, k]:.3f}"
                                       for i, k in enumerate(want.predictions)]
