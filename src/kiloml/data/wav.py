"""A strict RIFF/WAVE reader and a small writer.

Our own parser rather than ``scipy.io.wavfile`` so that every malformed file fails with one
line that names the file and the byte position, and so that untrusted input can never make it
allocate more than the file's size or loop forever (it is fuzzed with hypothesis).

Supported: PCM integer 8 (unsigned), 16, 24 and 32 bit, IEEE float 32 and 64 bit, plain
``WAVE_FORMAT_PCM``/``WAVE_FORMAT_IEEE_FLOAT`` headers and ``WAVE_FORMAT_EXTENSIBLE`` with a
PCM or float sub-format. Unknown chunks (LIST, fact, cue...) are skipped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiloml.errors import DataError

PCM, IEEE_FLOAT, EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
# The GUID tail shared by KSDATAFORMAT_SUBTYPE_PCM / _IEEE_FLOAT.
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


@dataclass(frozen=True)
class Wav:
    """Decoded WAV: ``data`` has shape (frames, channels) in the file's own sample type
    (uint8, int16, int32 for 24/32-bit PCM, float32, float64)."""

    data: np.ndarray
    sample_rate: int
    bits: int
    is_float: bool

    @property
    def channels(self) -> int:
        return int(self.data.shape[1])

    @property
    def frames(self) -> int:
        return int(self.data.shape[0])

    def as_float(self) -> np.ndarray:
        """Samples scaled to [-1, 1) as float32 (integer PCM divided by 2**(bits-1))."""
        d = self.data
        if self.is_float:
            return d.astype(np.float32)
        if self.bits == 8:
            return (d.astype(np.float32) - 128.0) / 128.0
        return d.astype(np.float32) / float(2 ** (self.bits - 1))


def read_wav(path: str | Path) -> Wav:
    p = Path(path)
    try:
        blob = p.read_bytes()
    except OSError as e:
        raise DataError(f"{p}: cannot read: {e.strerror or e}") from None
    return parse_wav(blob, str(p))


def parse_wav(blob: bytes, name: str = "<bytes>") -> Wav:
    """Parse a WAV file held in memory; raises DataError naming ``name`` and the offset."""
    n = len(blob)
    if n == 0:
        raise DataError(f"{name}: empty file")
    if n < 12 or blob[:4] not in (b"RIFF", b"RIFX") or blob[8:12] != b"WAVE":
        raise DataError(f"{name}: not a WAV file (expected 'RIFF....WAVE' at byte 0)")
    if blob[:4] == b"RIFX":
        raise DataError(f"{name}: big-endian RIFX WAV is not supported")
    fmt = None
    data_off = data_len = None
    pos = 12
    while pos + 8 <= n:
        cid = blob[pos:pos + 4]
        (size,) = struct.unpack_from("<I", blob, pos + 4)
        body = pos + 8
        if cid == b"fmt ":
            if size < 16 or body + size > n:
                raise DataError(f"{name}: byte {pos}: 'fmt ' chunk of {size} bytes is "
                                f"{'too short' if size < 16 else 'truncated'}")
            fmt = _parse_fmt(blob[body:body + size], name, pos)
        elif cid == b"data":
            if fmt is None:
                raise DataError(f"{name}: byte {pos}: 'data' chunk before 'fmt ' chunk")
            avail = n - body
            if size in (0, 0xFFFFFFFF):  # streaming writers leave the size open
                size = avail - avail % fmt[3]
            if size > avail:
                raise DataError(f"{name}: truncated: 'data' chunk at byte {pos} claims {size} "
                                f"bytes, only {avail} present")
            data_off, data_len = body, size
            break
        if size > n - body:
            raise DataError(f"{name}: truncated: chunk {cid!r} at byte {pos} claims {size} bytes, "
                            f"only {n - body} present")
        pos = body + size + (size & 1)
    if fmt is None:
        raise DataError(f"{name}: no 'fmt ' chunk")
    if data_off is None:
        raise DataError(f"{name}: no 'data' chunk")
    code, channels, rate, align, bits = fmt
    if data_len % align:
        raise DataError(f"{name}: 'data' chunk of {data_len} bytes is not a whole number of "
                        f"{align}-byte frames (truncated?)")
    raw = blob[data_off:data_off + data_len]
    frames = data_len // align
    is_float = code == IEEE_FLOAT
    if is_float:
        arr = np.frombuffer(raw, dtype="<f4" if bits == 32 else "<f8")
        if not np.isfinite(arr).all():
            bad = int(np.flatnonzero(~np.isfinite(arr))[0])
            raise DataError(f"{name}: sample {bad // channels} is NaN or infinite")
    elif bits == 8:
        arr = np.frombuffer(raw, dtype=np.uint8)
    elif bits == 16:
        arr = np.frombuffer(raw, dtype="<i2")
    elif bits == 24:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        arr = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8
    else:
        arr = np.frombuffer(raw, dtype="<i4")
    data = arr.reshape(frames, channels)
    data = data.astype(data.dtype.newbyteorder("="), copy=False)
    return Wav(data=data, sample_rate=rate, bits=bits, is_float=is_float)


def _parse_fmt(b: bytes, name: str, pos: int) -> tuple[int, int, int, int, int]:
    code, channels, rate, _byte_rate, align, bits = struct.unpack_from("<HHIIHH", b, 0)
    if code == EXTENSIBLE:
        if len(b) < 40:
            raise DataError(f"{name}: byte {pos}: WAVE_FORMAT_EXTENSIBLE 'fmt ' chunk too short")
        sub = b[24:40]
        if sub[2:] != _GUID_TAIL or struct.unpack_from("<H", sub, 0)[0] not in (PCM, IEEE_FLOAT):
            raise DataError(f"{name}: unsupported WAVE_FORMAT_EXTENSIBLE sub-format")
        code = struct.unpack_from("<H", sub, 0)[0]
    if code not in (PCM, IEEE_FLOAT):
        raise DataError(f"{name}: unsupported WAV encoding 0x{code:04x} (expected PCM or float)")
    if channels == 0:
        raise DataError(f"{name}: 'fmt ' chunk says 0 channels")
    if rate == 0:
        raise DataError(f"{name}: 'fmt ' chunk says sample rate 0")
    ok_bits = (32, 64) if code == IEEE_FLOAT else (8, 16, 24, 32)
    if bits not in ok_bits:
        kind = "float" if code == IEEE_FLOAT else "PCM"
        raise DataError(f"{name}: unsupported {bits}-bit {kind} samples")
    if align != channels * bits // 8:
        raise DataError(f"{name}: 'fmt ' block align {align} does not match {channels} channels "
                        f"x {bits} bits")
    return code, channels, rate, align, bits


def write_wav(path: str | Path, data: np.ndarray, sample_rate: int) -> None:
    """Write int16 PCM (data: int16 of shape (frames,) or (frames, channels))."""
    d = np.asarray(data)
    if d.dtype != np.int16:
        raise DataError(f"{path}: write_wav takes int16 samples, got {d.dtype}")
    if d.ndim == 1:
        d = d[:, None]
    ch = d.shape[1]
    raw = d.astype("<i2").tobytes()
    hdr = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(raw), b"WAVE", b"fmt ", 16, PCM, ch,
                      int(sample_rate), int(sample_rate) * ch * 2, ch * 2, 16, b"data", len(raw))
    Path(path).write_bytes(hdr + raw)
