"""The emulator's double-precision FPv5 hook (kiloml.targets.vfp_double), instruction by
instruction: each is assembled by GNU as, executed in Unicorn through the hook, and its
result compared with an independent oracle:

* arithmetic (VADD, VSUB, VMUL, VNMUL, VDIV, VSQRT, VMLA...): numpy float64 (IEEE binary64,
  round to nearest) for numbers, the Arm ARM's NaN rules (FPProcessNaNs: first signalling NaN
  quieted, else first quiet NaN; default NaN 0x7FF8000000000000) for NaNs;
* fused multiply-add (VFMA, VFMS, VFNMA, VFNMS): the host C library's fma();
* conversions to single: numpy's float64 -> float32 cast;
* what does not depend on the precision (VCMP flags, VSEL, VMAXNM/VMINNM, VRINTx, VCVTx and
  VCVT(R) to integers, VMOV immediate, VABS, VNEG): Unicorn's own single-precision
  instruction (QEMU's softfloat) on single-representable operands.

Finally the MFCC block's f32 C, built with -mfpu=fpv5-d16 for the STM32H743 (newlib's logf
computes in double), runs through the hook and equals the host build.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import shutil
import struct
import subprocess

import numpy as np
import pytest
import unicorn
from elftools.elf.elffile import ELFFile
from unicorn import arm_const as A

from kiloml.targets import vfp_double

if shutil.which("arm-none-eabi-as") is None:
    pytest.fail("arm-none-eabi-as is missing: run `make toolchain`", pytrace=False)

LIBM = ctypes.CDLL(ctypes.util.find_library("m"))
LIBM.fma.restype = ctypes.c_double
LIBM.fma.argtypes = [ctypes.c_double] * 3
CODE = 0x08000000
DNAN = 0x7FF8000000000000
QNAN = 0x7FF8000000000123            # a quiet NaN with a payload
SNAN = 0x7FF0000000000456            # a signalling NaN
NQNAN = 0xFFF8000000000789


def assemble(lines: list[str], tmp_path, whole: bool = False):
    """Each line assembled for a Cortex-M7 with FPv5-D16: its 4 bytes (``whole``: the
    program's bytes)."""
    src = tmp_path / "t.s"
    src.write_text(".syntax unified\n.thumb\n" + "\n".join(lines) + "\n")
    obj = tmp_path / "t.o"
    subprocess.run(["arm-none-eabi-as", "-mcpu=cortex-m7", "-mfpu=fpv5-d16", "-o", str(obj),
                    str(src)], check=True, capture_output=True)
    with open(obj, "rb") as fh:
        text = ELFFile(fh).get_section_by_name(".text").data()
    if whole:
        return text
    assert len(text) == 4 * len(lines)
    return [text[4 * k:4 * k + 4] for k in range(len(lines))]


def run(code: bytes, d=(), s=(), flags: int = 0, hook: bool = True) -> dict:
    """Execute ``msr APSR_nzcvq, r3`` (r3 = ``flags``), the instruction(s) ``code``, then
    ``vmrs APSR_nzcv, fpscr``; return D0-D3, S0-S3 and the APSR flags."""
    uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
    uc.ctl_set_cpu_model(A.UC_CPU_ARM_CORTEX_M7)
    uc.reg_write(A.UC_ARM_REG_C1_C0_2, 0xF << 20)
    uc.mem_map(CODE, 0x1000)
    if hook:
        vfp_double.install(uc)
    prog = struct.pack("<HH", 0xF383, 0x8800) + code + struct.pack("<HH", 0xEEF1, 0xFA10)
    uc.mem_write(CODE, prog)
    for k, v in enumerate(d):
        uc.reg_write(vfp_double.D_REGS[k], v)
    for k, v in enumerate(s):
        uc.reg_write(vfp_double.S_REGS[k], v)
    uc.reg_write(A.UC_ARM_REG_R3, flags)
    uc.emu_start(CODE | 1, CODE + len(prog))
    return {"d": [uc.reg_read(vfp_double.D_REGS[k]) for k in range(4)],
            "s": [uc.reg_read(vfp_double.S_REGS[k]) for k in range(4)],
            "nzcv": uc.reg_read(A.UC_ARM_REG_APSR) >> 28}


def invalid_nan(enc, name, a, x, y) -> int:
    """The NaN an invalid operation gives: the default NaN, negated where the instruction
    negates its product afterwards (FPNeg: VNMUL, VMLS, VNMLA) -- the sign as the core's
    single-precision form of the instruction gives it."""
    ref = run(enc[f"{name}_s"], s=[s32(a), 0, s32(x), 0, s32(y)])["s"][0]
    assert ref & 0x7FFFFFFF == 0x7FC00000
    return DNAN | ((ref >> 31) << 63)


def bits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def fval(b: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", b))[0]


def s32(x: float) -> int:
    return struct.unpack("<I", np.float32(x).tobytes())[0]


def d_of_s(b: int) -> int:
    """A single's bit pattern as the double of the same value (exact)."""
    return bits(float(np.frombuffer(struct.pack("<I", b), np.float32)[0]))


rng = np.random.default_rng(7)
SPECIAL = [0.0, -0.0, 1.0, -1.5, math.inf, -math.inf, 5e-324, -2.2250738585072014e-308,
           1.7976931348623157e308, 0.1, 3.0, 1e-300, -1e300]
NUMBERS = SPECIAL + list(rng.normal(0, 1, 24) * 10.0 ** rng.integers(-30, 30, 24))


def pairs():
    out = [(x, y) for x in SPECIAL for y in SPECIAL]
    out += list(zip(NUMBERS, rng.permutation(NUMBERS)))
    return out


def nan_cases(two: bool = True):
    """(operands, expected) by FPProcessNaNs."""
    one = [((QNAN,), QNAN), ((SNAN,), SNAN | (1 << 51)), ((NQNAN,), NQNAN)]
    if not two:
        return one
    return [((QNAN, bits(1.0)), QNAN), ((bits(1.0), QNAN), QNAN), ((QNAN, SNAN), SNAN | (1 << 51)),
            ((NQNAN, QNAN), NQNAN), ((SNAN, QNAN), SNAN | (1 << 51))]


@pytest.fixture(scope="module")
def enc(tmp_path_factory):
    lines = {
        "vadd": "vadd.f64 d0, d1, d2", "vsub": "vsub.f64 d0, d1, d2",
        "vmul": "vmul.f64 d0, d1, d2", "vnmul": "vnmul.f64 d0, d1, d2",
        "vdiv": "vdiv.f64 d0, d1, d2", "vsqrt": "vsqrt.f64 d0, d2",
        "vmla": "vmla.f64 d0, d1, d2", "vmls": "vmls.f64 d0, d1, d2",
        "vnmla": "vnmla.f64 d0, d1, d2", "vnmls": "vnmls.f64 d0, d1, d2",
        "vfma": "vfma.f64 d0, d1, d2", "vfms": "vfms.f64 d0, d1, d2",
        "vfnma": "vfnma.f64 d0, d1, d2", "vfnms": "vfnms.f64 d0, d1, d2",
        **{f"{k}_s": f"{k}.f32 s0, s2, s4" for k in ("vadd", "vsub", "vmul", "vnmul", "vdiv",
                                                      "vmla", "vmls", "vnmla", "vnmls")},
        "vcvt_f32_f64": "vcvt.f32.f64 s0, d1", "vcvt_f64_f32": "vcvt.f64.f32 d0, s2",
        "vmov_d": "vmov.f64 d0, d2", "vabs_d": "vabs.f64 d0, d2", "vneg_d": "vneg.f64 d0, d2",
        "vabs_s": "vabs.f32 s0, s4", "vneg_s": "vneg.f32 s0, s4",
        "vcmp_d": "vcmp.f64 d1, d2", "vcmp_s": "vcmp.f32 s2, s4",
        "vcmpe_d": "vcmpe.f64 d1, d2", "vcmpe_s": "vcmpe.f32 s2, s4",
        "vcmpz_d": "vcmp.f64 d1, #0", "vcmpz_s": "vcmp.f32 s2, #0",
        "vcvt_f64_s32": "vcvt.f64.s32 d0, s2", "vcvt_f64_u32": "vcvt.f64.u32 d0, s2",
        "vcvt_s32_f64": "vcvt.s32.f64 s0, d1", "vcvt_s32_f32": "vcvt.s32.f32 s0, s2",
        "vcvt_u32_f64": "vcvt.u32.f64 s0, d1", "vcvt_u32_f32": "vcvt.u32.f32 s0, s2",
        "vcvtr_s32_f64": "vcvtr.s32.f64 s0, d1", "vcvtr_s32_f32": "vcvtr.s32.f32 s0, s2",
    }
    for m in "anpm":
        lines[f"vrint{m}_d"] = f"vrint{m}.f64 d0, d2"
        lines[f"vrint{m}_s"] = f"vrint{m}.f32 s0, s4"
        lines[f"vcvt{m}_d"] = f"vcvt{m}.s32.f64 s0, d1"
        lines[f"vcvt{m}_s"] = f"vcvt{m}.s32.f32 s0, s2"
        lines[f"vcvt{m}u_d"] = f"vcvt{m}.u32.f64 s0, d1"
        lines[f"vcvt{m}u_s"] = f"vcvt{m}.u32.f32 s0, s2"
    for m in "zrx":
        lines[f"vrint{m}_d"] = f"vrint{m}.f64 d0, d2"
        lines[f"vrint{m}_s"] = f"vrint{m}.f32 s0, s4"
    for c in ("eq", "vs", "ge", "gt"):
        lines[f"vsel{c}_d"] = f"vsel{c}.f64 d0, d1, d2"
        lines[f"vsel{c}_s"] = f"vsel{c}.f32 s0, s2, s4"
    for m in ("maxnm", "minnm"):
        lines[f"v{m}_d"] = f"v{m}.f64 d0, d1, d2"
        lines[f"v{m}_s"] = f"v{m}.f32 s0, s2, s4"
    for imm in ("1.0", "-2.5", "0.125", "31.0", "-0.1875"):
        lines[f"vmov_imm{imm}_d"] = f"vmov.f64 d0, #{imm}"
        lines[f"vmov_imm{imm}_s"] = f"vmov.f32 s0, #{imm}"
    names = list(lines)
    code = assemble([lines[k] for k in names], tmp_path_factory.mktemp("asm"))
    return dict(zip(names, code))


def test_the_instructions_are_invalid_without_the_hook(enc):
    """The reason for the hook: Unicorn's Cortex-M7 has no double-precision FPU."""
    with pytest.raises(unicorn.UcError, match="INSN_INVALID"):
        run(enc["vadd"], d=[0, bits(1.0), bits(2.0)], hook=False)
    assert run(enc["vabs_s"], s=[0, 0, 0, 0, s32(-2.0)], hook=False)["s"][0] == s32(2.0)


@pytest.mark.parametrize("name,op", [
    ("vadd", lambda x, y: x + y), ("vsub", lambda x, y: x - y), ("vmul", lambda x, y: x * y),
    ("vnmul", lambda x, y: -(x * y)), ("vdiv", lambda x, y: x / y)])
def test_arithmetic_matches_ieee_double(enc, name, op):
    with np.errstate(all="ignore"):
        for x, y in pairs():
            want = float(op(np.float64(x), np.float64(y)))
            got = run(enc[name], d=[0, bits(x), bits(y)])["d"][0]
            if math.isnan(want):  # an invalid operation: the Arm default NaN
                assert got == invalid_nan(enc, name, 0.0, x, y), (name, x, y)
            else:
                assert got == bits(want), (name, x, y, fval(got), want)
    for ops, want in nan_cases():
        got = run(enc[name], d=[0, *ops])["d"][0]
        assert got == (want ^ (1 << 63) if name == "vnmul" else want), (name, ops)


def test_sqrt_matches_ieee_double(enc):
    with np.errstate(all="ignore"):
        for x in NUMBERS:
            want = float(np.sqrt(np.float64(x)))
            got = run(enc["vsqrt"], d=[0, 0, bits(x)])["d"][0]
            assert got == (DNAN if math.isnan(want) else bits(want)), x
    for (x,), want in nan_cases(two=False):
        assert run(enc["vsqrt"], d=[0, 0, x])["d"][0] == want


@pytest.mark.parametrize("name,op", [
    ("vmla", lambda a, x, y: a + x * y), ("vmls", lambda a, x, y: a + -(x * y)),
    ("vnmla", lambda a, x, y: -a + -(x * y)), ("vnmls", lambda a, x, y: -a + x * y)])
def test_multiply_accumulate_rounds_twice(enc, name, op):
    with np.errstate(all="ignore"):
        for (x, y), a in zip(pairs(), rng.permutation(NUMBERS * 20)):
            want = float(op(np.float64(a), np.float64(x), np.float64(y)))
            got = run(enc[name], d=[bits(a), bits(x), bits(y)])["d"][0]
            if math.isnan(want):
                assert got == invalid_nan(enc, name, a, x, y), (name, a, x, y)
            else:
                assert got == bits(want), (name, a, x, y)


@pytest.mark.parametrize("name,sa,sx", [("vfma", 1, 1), ("vfms", 1, -1), ("vfnma", -1, -1),
                                        ("vfnms", -1, 1)])
def test_fused_multiply_add_matches_libm_fma(enc, name, sa, sx):
    cases = [(a, x, y) for (x, y), a in zip(pairs(), rng.permutation(NUMBERS * 20))]
    # cancellation and rounding-sensitive cases: x*y close to -a
    for _ in range(60):
        x, y = rng.normal(0, 1, 2) * 10.0 ** rng.integers(-5, 5, 2)
        cases.append((-sa * sx * float(np.float64(x) * np.float64(y)), x, y))
    cases += [(0.0, 0.0, -1.0), (-0.0, 0.0, -1.0), (-0.0, -0.0, 1.0), (1e-300, 1e-300, -1e-300)]
    for a, x, y in cases:
        want = LIBM.fma(sx * x, y, sa * a)
        got = run(enc[name], d=[bits(a), bits(x), bits(y)])["d"][0]
        assert got == (DNAN if math.isnan(want) else bits(want)), (name, a, x, y)
    # NaNs: the addend is checked first, then the multiplicands; inf x 0 + qNaN is invalid
    assert run(enc[name], d=[QNAN, bits(1.0), SNAN])["d"][0] == SNAN | (1 << 51)
    assert run(enc[name], d=[QNAN, bits(1.0), bits(2.0)])["d"][0] == QNAN ^ (
        (1 << 63) if sa < 0 else 0)  # VFNMA/VFNMS negate the addend first (FPNeg)
    assert run(enc[name], d=[QNAN, bits(math.inf), 0])["d"][0] == DNAN


def test_conversions_between_double_and_single(enc):
    for x in NUMBERS + [3.4028235677973366e38, 3.4028234663852886e38, 1e-45, 7e-46, 1.5e-45]:
        with np.errstate(over="ignore"):  # overflow to inf is the expected result
            want = struct.unpack("<I", np.float64(x).astype(np.float32).tobytes())[0]
        assert run(enc["vcvt_f32_f64"], d=[0, bits(x)])["s"][0] == want, x
        if not math.isinf(x) and abs(x) < 3.4e38:
            s = s32(x)
            assert run(enc["vcvt_f64_f32"], s=[0, 0, s])["d"][0] == d_of_s(s), x
    # NaNs keep sign and the payload's top bits, quieted (FPConvert)
    assert run(enc["vcvt_f32_f64"], d=[0, SNAN | (0x5 << 48)])["s"][0] == 0x7FC00000 | (0x5 << 19)
    assert run(enc["vcvt_f64_f32"], s=[0, 0, 0xFF800001])["d"][0] == (0xFFF8 << 48) | (1 << 29)
    for v, signed, want in [(-7, True, -7.0), (0x80000000, True, -2147483648.0),
                            (0xFFFFFFFF, False, 4294967295.0), (12345, False, 12345.0)]:
        got = run(enc["vcvt_f64_s32" if signed else "vcvt_f64_u32"], s=[0, 0, v & 0xFFFFFFFF])
        assert got["d"][0] == bits(want)


SINGLES = [0.0, -0.0, 0.5, -0.5, 1.5, 2.5, -2.5, 0.49999997, 3.7, -3.7, 1e10, -1e10, 4e9,
           -2147483648.0, 2147483648.0, 8388609.0, math.inf, -math.inf, 1e-40, -1e-40, math.nan]


def _vs_single(enc, dname, sname, d_in, s_in, out):
    """Run the .F64 and the .F32 form; compare their results as values."""
    for x in SINGLES:
        sx = s32(x)
        got = run(enc[dname], **d_in(d_of_s(sx)))
        ref = run(enc[sname], **s_in(sx))
        if out == "d":
            want = ref["s"][0]
            if not math.isnan(x):
                assert got["d"][0] == d_of_s(want), (dname, x)
            else:
                assert vfp_double.is_nan(got["d"][0]), (dname, x)
        else:
            assert got["s"][0] == ref["s"][0], (dname, x)


@pytest.mark.parametrize("mode", list("anpmzrx"))
def test_round_to_integral_like_the_single_instruction(enc, mode):
    _vs_single(enc, f"vrint{mode}_d", f"vrint{mode}_s", lambda v: {"d": [0, 0, v]},
               lambda v: {"s": [0, 0, 0, 0, v]}, "d")


TO_INT = ([(f"vcvt{m}_d", f"vcvt{m}_s") for m in "anpm"]
          + [(f"vcvt{m}u_d", f"vcvt{m}u_s") for m in "anpm"]
          + [(f"vcvt{k}_f64", f"vcvt{k}_f32") for k in ("_s32", "_u32", "r_s32")])


@pytest.mark.parametrize("dname,sname", TO_INT)
def test_convert_to_integer_like_the_single_instruction(enc, dname, sname):
    _vs_single(enc, dname, sname, lambda v: {"d": [0, v]}, lambda v: {"s": [0, 0, v]}, "s")


@pytest.mark.parametrize("name", ["vcmp", "vcmpe", "vcmpz"])
def test_compare_flags_like_the_single_instruction(enc, name):
    for x in SINGLES:
        for y in SINGLES:
            got = run(enc[f"{name}_d"], d=[0, d_of_s(s32(x)), d_of_s(s32(y))], flags=0xF << 28)
            ref = run(enc[f"{name}_s"], s=[0, 0, s32(x), 0, s32(y)], flags=0xF << 28)
            assert got["nzcv"] == ref["nzcv"], (name, x, y)
            assert got["d"][0] == 0 and got["s"][:2] == [0, 0]  # borrowed S0/S1 restored


def test_compare_then_branch_in_a_program(tmp_path):
    """VCMP.F64 + VMRS + a conditional move, the way compiled code uses it."""
    code = assemble(["vcmpe.f64 d1, d2", "vmrs APSR_nzcv, fpscr", "ite gt", "movgt r0, #1",
                     "movle r0, #2"], tmp_path, whole=True)
    for x, y, want in [(2.0, 1.0, 0x2), (1.0, 2.0, 0x8), (1.0, 1.0, 0x6)]:
        assert run(code, d=[0, bits(x), bits(y)])["nzcv"] == want


@pytest.mark.parametrize("cond", ["eq", "vs", "ge", "gt"])
def test_select_like_the_single_instruction(enc, cond):
    for flags in range(16):
        got = run(enc[f"vsel{cond}_d"], d=[0, bits(1.0), bits(2.0)], flags=flags << 28)
        ref = run(enc[f"vsel{cond}_s"], s=[0, 0, s32(1.0), 0, s32(2.0)], flags=flags << 28)
        assert got["d"][0] == d_of_s(ref["s"][0]), (cond, flags)


@pytest.mark.parametrize("op", ["maxnm", "minnm"])
def test_max_min_number_like_the_single_instruction(enc, op):
    for x in SINGLES:
        for y in SINGLES:
            got = run(enc[f"v{op}_d"], d=[0, d_of_s(s32(x)), d_of_s(s32(y))])["d"][0]
            ref = run(enc[f"v{op}_s"], s=[0, 0, s32(x), 0, s32(y)])["s"][0]
            if math.isnan(x) and math.isnan(y):
                assert vfp_double.is_nan(got)
            else:
                assert got == d_of_s(ref), (op, x, y)


def test_moves_and_sign_operations(enc):
    for imm in ("1.0", "-2.5", "0.125", "31.0", "-0.1875"):
        got = run(enc[f"vmov_imm{imm}_d"])["d"][0]
        assert got == d_of_s(run(enc[f"vmov_imm{imm}_s"])["s"][0]) == bits(float(imm))
    for x in NUMBERS + [fval(QNAN), fval(SNAN)]:
        bx = bits(x)
        assert run(enc["vmov_d"], d=[0, 0, bx])["d"][0] == bx
        assert run(enc["vabs_d"], d=[0, 0, bx])["d"][0] == bx & ~(1 << 63)
        assert run(enc["vneg_d"], d=[0, 0, bx])["d"][0] == bx ^ (1 << 63)
    for x in SINGLES:  # and as the single-precision core does it
        got = run(enc["vneg_d"], d=[0, 0, d_of_s(s32(x))])["d"][0]
        if not math.isnan(x):
            assert got == d_of_s(run(enc["vneg_s"], s=[0, 0, 0, 0, s32(x)])["s"][0])


def test_mfcc_f32_on_stm32h743_runs_its_double_precision_code(tmp_path):
    """The MFCC block built for the STM32H743's DP FPU uses double-precision instructions
    (newlib's logf) and equals the host build; the STM32F746 (SP FPU) build needs none."""
    from kiloml.dsp import make_block
    from kiloml.targets.dsp_profile import c_input, profile_dsp
    from kiloml.targets.profile import load_boards

    mfcc = make_block(preset="mlperf-kws")
    t = np.arange(16000) / 16000.0
    clip = (0.3 * np.sin(2 * np.pi * 440 * t) * np.hanning(16000)).astype(np.float32)[:, None]
    for bid, doubles in (("stm32h743", True), ("stm32f746-disco", False)):
        r = profile_dsp(mfcc, 16000, 1, c_input(mfcc, clip, "f32"), load_boards()[bid],
                        workdir=tmp_path / bid)
        assert r["runtime"] == "hard-float" and r["output_matches_host"] is True, bid
        dis = subprocess.run(["arm-none-eabi-objdump", "-d", str(tmp_path / bid / "dsp.elf")],
                             capture_output=True, text=True, check=True).stdout
        assert (".f64" in dis) == doubles, bid
