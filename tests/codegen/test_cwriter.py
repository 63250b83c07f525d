"""The C writer's primitives (kiloml.codegen.cwriter), checked where it matters: by a C
compiler. Float constants read back bit for bit, comments stay comments whatever their text,
names are valid and unique, and a model whose tensor names are hostile still compiles and
runs bit-exact."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import opbuilder as ob  # noqa: E402
from kiloml.codegen import cwriter  # noqa: E402
from kiloml.codegen.c import generate_c  # noqa: E402
from kiloml.codegen.host import WARNINGS, HostBuild, find_cc  # noqa: E402
from kiloml.errors import KilomlError  # noqa: E402
from kiloml.ir.interpreter import Interpreter  # noqa: E402


def compile_and_run(tmp_path: Path, source: str) -> str:
    """Build ``source`` for the host with the generated code's warning flags; its stdout."""
    c = tmp_path / "t.c"
    c.write_text(source)
    exe = tmp_path / "t"
    proc = subprocess.run([find_cc(), *WARNINGS, "-O1", str(c), "-o", str(exe)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout


def float32_cases() -> np.ndarray:
    """Edge values (zeros, denormals, extremes, powers of two and ten around the positional /
    scientific switch, values needing all 9 digits) and random bit patterns."""
    rng = np.random.default_rng(7)
    f32 = np.finfo(np.float32)
    edges = [0.0, -0.0, 1.0, -1.0, 0.1, 1 / 3, 2 / 3, 1e-4, 9.999999e-5, 1e16, 9.999999e15,
             16777216.0, 16777217.0, 123456789.0, 3.4028235e38, -3.4028235e38,
             float(f32.tiny), float(f32.tiny) / 2, 1.4e-45, -1.4e-45, float(f32.eps),
             0.00392156862745098, 6.02214076e23, 2.0 ** -126, 2.0 ** 127]
    bits = rng.integers(0, 2 ** 32, 3000, dtype=np.uint64).astype(np.uint32)
    rand = bits.view(np.float32)
    rand = rand[np.isfinite(rand)]
    return np.concatenate([np.array(edges, np.float32), rand,
                           rng.normal(0, 1, 500).astype(np.float32)])


def test_float_literals_read_back_bit_for_bit(tmp_path):
    vals = float32_cases()
    lits = [cwriter.float_literal(v) for v in vals]
    assert all(re.fullmatch(r"-?\d+\.\d+(e[+-]\d{2})?f", s) for s in lits), \
        [s for s in lits if not re.fullmatch(r"-?\d+\.\d+(e[+-]\d{2})?f", s)][:5]
    assert cwriter.float_literal(1.0) == "1.0f" and cwriter.float_literal(0.1) == "0.1f"
    src = ("#include <stdint.h>\n#include <stdio.h>\n#include <string.h>\n"
           + cwriter.array_decl("float", "vals", vals) + "\n"
           "int main(void)\n{\n    size_t i;\n    for (i = 0; i < sizeof vals / sizeof vals[0]; ++i) {\n"
           "        uint32_t u;\n        memcpy(&u, &vals[i], sizeof u);\n"
           '        printf("%08x\\n", (unsigned)u);\n    }\n    return 0;\n}\n')
    got = [int(x, 16) for x in compile_and_run(tmp_path, src).split()]
    assert got == vals.view(np.uint32).tolist()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 1e39])
def test_non_finite_floats_are_refused(bad):
    with pytest.raises(KilomlError, match="non-finite"):
        cwriter.float_literal(bad)  # 1e39 rounds to float32 infinity


def test_float_literals_do_not_depend_on_the_locale():
    import locale

    saved = locale.setlocale(locale.LC_NUMERIC)
    for name in ("de_DE.UTF-8", "fr_FR.UTF-8", "C.UTF-8", "C"):
        try:
            locale.setlocale(locale.LC_NUMERIC, name)
        except locale.Error:
            continue
        try:
            assert cwriter.float_literal(0.5) == "0.5f"
            assert cwriter.format_array(np.array([1.5, -2.25], np.float32)) == "    1.5f, -2.25f,"
        finally:
            locale.setlocale(locale.LC_NUMERIC, saved)


def test_comments_survive_any_text(tmp_path):
    """Comment text that would end the comment (*/), open a nested one (/*, an error under
    -Wall -Werror) or break the line stays inside the comment: if it escaped, the C below
    would not compile, and the function after it would not run."""
    hostile = ["model */ this is not C /*", "/* nested", "a **/ b", "*/*/*/", "two\nlines */ x",
               "tab\tand bell\a", "trailing *"]
    assert "*/" not in cwriter.comment_text("a**/b") and "/*" not in cwriter.comment_text("/*/")
    src = "\n".join([cwriter.comment(h) for h in hostile] + [cwriter.comment(hostile)])
    src += "\n#include <stdio.h>\nint main(void)\n{\n    printf(\"kept\\n\");\n    return 0;\n}\n"
    assert compile_and_run(tmp_path, src) == "kept\n"
    block = cwriter.comment(["first", "second"])
    assert block == "/* first\n * second\n */"
    assert cwriter.comment("one line") == "/* one line */"


def test_frontmatter():
    fm = cwriter.frontmatter("kiloml compile m.tflite -o out */", ["model sha256: ab12"])
    lines = fm.splitlines()
    assert lines[0].startswith("/* Generated by kiloml ") and "do not edit" in lines[0]
    assert lines[1] == " * command: kiloml compile m.tflite -o out * /"
    assert lines[2] == " * model sha256: ab12" and lines[3] == " */" and fm.endswith("\n")


def test_identifiers_and_deduplication():
    ident = cwriter.identifier
    assert ident("conv2d/Conv2D;bias:0") == "conv2d_conv2d_bias_0"
    assert ident("__x__") == "x" and ident("9lives") == "t_9lives" and ident("") == "t_"
    assert ident("int") == "t_int" and ident("Static") == "t_static"
    assert len(ident("x" * 200)) == 48
    names = cwriter.NameTable(reserved=["m_arena"])
    assert [names.add(b) for b in ("m_a", "m_a", "m_a", "m_arena", "m_a_2")] == \
        ["m_a", "m_a_2", "m_a_3", "m_arena_2", "m_a_2_2"]
    assert all(re.fullmatch(r"[a-z_][a-z0-9_]*", ident(s))
               for s in ("ä-ö", "1", "a b", "___", "-", "x" * 60))


def test_arrays_and_structs_wrap_at_100_columns():
    arr = cwriter.array_decl("int32_t", "m_big", np.arange(-1000, 1000, 7) * 1_000_003)
    assert max(len(line) for line in arr.splitlines()) <= 100
    assert cwriter.array_decl("uint32_t", "m_u", [0, 4294967295]).count("u,") == 2
    assert cwriter.array_decl("int8_t", "m_e", []) == "static const int8_t m_e[1] = {\n    0,\n};"
    short = cwriter.struct_decl("kml_p", "m_n0_p", {"a": 1, "b": np.float32(0.25)})
    assert short == "static const kml_p m_n0_p = {.a = 1, .b = 0.25f};"
    long = cwriter.struct_decl("kml_p", "m_n0_p", {f"field{i}": i * 1000 for i in range(20)})
    assert max(len(line) for line in long.splitlines()) <= 100 and long.endswith("\n};")


def test_hostile_tensor_names_compile_and_run(tmp_path):
    """Tensor names that collide after sanitizing, shadow the generator's own symbols
    (arena, accessors, node constants) or hold comment terminators: the generated C still
    compiles warning-free under ASan/UBSan and matches the reference interpreter."""
    m = ob.ModelBuilder(np.random.default_rng(5), "hostile")
    x = m.input((1, 4, 4, 3))
    y = m.conv2d(x, 4, kernel=3)
    z = m.conv2d(m.conv2d(y, 4, kernel=1), 4, kernel=1)
    g = m.build(z)
    consts = [t for t in g.tensors if t.is_const]
    hostile = ["arena", "s8", "n0_p", "w */ x /* y", "w\n*/ x /* y", "invoke"]
    assert len(consts) == len(hostile)
    for t, name in zip(consts, hostile):
        t.name = name
    g.tensors[g.outputs[0]].name = "out */ not C /*"
    res = generate_c(g, "m", command="test */ still a comment")
    src = res.files["m.c"]
    assert "test * / still a comment" in src
    names = [n for n in re.findall(r"static const \w+ (m_\w+)\[", src)
             if not re.match(r"m_n\d+_", n)]  # the weights, not the nodes' own arrays
    assert len(names) == len(set(names)) == len(consts)
    assert {"m_arena", "m_s8", "m_n0_p", "m_invoke"}.isdisjoint(names)
    assert {"m_w_x_y", "m_w_x_y_2"} <= set(names)
    rng = np.random.default_rng(6)
    xs = rng.integers(-128, 128, (3, 1, 4, 4, 3), dtype=np.int8)
    got = HostBuild(res, sanitize=True, workdir=tmp_path).run(xs)[0]
    want = np.stack([Interpreter(g).run(v)[0] for v in xs])
    assert np.array_equal(got, want)
