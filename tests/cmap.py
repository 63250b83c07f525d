"""One C expression applied to every element of an array: on the host (warnings as errors,
ASan/UBSan unless turned off) or in the Cortex-M emulator (the boards' profiling flags), for
tests that check a runtime function against an oracle over many inputs.

In the expression ``x`` points at the element's ``per`` values (``x[0]``, ``x[1]``...); the
results come back as an array of ``out`` dtype, one per element."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from kiloml.codegen.host import SANITIZE, WARNINGS, find_cc

C_TYPES = {np.dtype(np.int32): "int32_t", np.dtype(np.float32): "float"}

HOST = r"""
#include <stdio.h>
#include <stdint.h>
{includes}
static {tin} in_[{per} * 4096];
static {tout} out_[4096];
int main(int argc, char **argv)
{{
    FILE *f, *o;
    size_t n, i;
    if (argc != 3) {{ return 2; }}
    f = fopen(argv[1], "rb");
    o = fopen(argv[2], "wb");
    if (!f || !o) {{ return 3; }}
    while ((n = fread(in_, sizeof in_[0] * {per}, 4096, f)) > 0) {{
        for (i = 0; i < n; ++i) {{
            const {tin} *x = in_ + {per} * i;
            out_[i] = {expr};
        }}
        fwrite(out_, sizeof out_[0], n, o);
    }}
    fclose(f);
    fclose(o);
    return 0;
}}
"""

TARGET = r"""
#include <stdint.h>
{includes}
{tout} kml_r[{n}];
__attribute__((noinline)) void kml_batch_end(void);
void kml_batch_end(void) {{ __asm volatile ("" ::: "memory"); }}
int main(void)
{{
    const {tin} *in_ = (const {tin} *)0x60000000u;
    uint32_t i;
    for (i = 0; i < {n}u; ++i) {{
        const {tin} *x = in_ + {per} * i;
        kml_r[i] = {expr};
    }}
    kml_batch_end();
    for (;;) {{ }}
}}
"""


def _shape(x: np.ndarray) -> tuple[np.ndarray, int]:
    x = np.ascontiguousarray(x)
    return x, (1 if x.ndim == 1 else int(x.shape[1]))


def host_map(tmp_path: Path, expr: str, x: np.ndarray, out: type, includes: str,
             include_dirs: list, sources: list = (), sanitize: bool = True,
             opt: str = "-O2") -> np.ndarray:
    """``expr`` over the rows of ``x`` (n values, or n x per), built (with ``sources``, at
    ``opt``) and run on the host."""
    x, per = _shape(x)
    src = tmp_path / "map_main.c"
    src.write_text(HOST.format(includes=includes, tin=C_TYPES[x.dtype],
                               tout=C_TYPES[np.dtype(out)], per=per, expr=expr))
    exe = tmp_path / "map_host"
    cmd = [find_cc(), *WARNINGS, opt, *(SANITIZE if sanitize else ()),
           *(f"-I{d}" for d in include_dirs), str(src), *map(str, sources), "-o", str(exe),
           "-lm"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    x.tofile(tmp_path / "map_in.bin")
    r = subprocess.run([str(exe), str(tmp_path / "map_in.bin"), str(tmp_path / "map_out.bin")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and not r.stderr, r.stderr
    return np.fromfile(tmp_path / "map_out.bin", out)


def emulator_map(tmp_path: Path, expr: str, x: np.ndarray, out: type, core: str,
                 includes: str, include_dirs: list) -> np.ndarray:
    """``expr`` over the rows of ``x`` in a bare-metal build for ``core`` run in the emulator
    (arm-none-eabi-gcc, the profiling flags)."""
    from kiloml.targets.batch import build_image, run_image
    from kiloml.targets.profile import PROFILE_FLAGS

    x, per = _shape(x)
    n = len(x)
    src = tmp_path / "map_target.c"
    src.write_text(TARGET.format(includes=includes, tin=C_TYPES[x.dtype],
                                 tout=C_TYPES[np.dtype(out)], per=per, n=n, expr=expr))
    image = build_image([src], list(include_dirs), PROFILE_FLAGS[core], tmp_path / "elf")
    got = run_image(image, core, {"kml_r": np.dtype(out).itemsize * n}, input_data=x.tobytes())
    return np.frombuffer(got["kml_r"], out)
