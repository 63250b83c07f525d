"""Double-precision FPv5 instructions the emulator's Cortex-M7 lacks, executed in a hook.

Unicorn's Cortex-M7 model has a single-precision FPU (FPv5-SP-D16): the double-precision data
processing a ``-mfpu=fpv5-d16`` build emits (newlib's ``logf`` computes in double, C code
using ``double``) is an invalid instruction there. The STM32H7 and STM32F76x have the
double-precision FPU, so their builds use those instructions: ``install`` adds an
invalid-instruction hook that decodes them and computes their result as the Armv7-M
Architecture Reference Manual defines it (section A7.7 and the FP pseudocode of A2.5:
FPAdd, FPMul, FPMulAdd, FPDiv, FPSqrt, FPCompare, FPRoundInt, FPToFixed, FPConvert,
FPMaxNum/FPMinNum, VFPExpandImm) for the FPSCR the startup code leaves: round to nearest,
FZ = 0, DN = 0. NaN operands propagate as FPProcessNaNs says (signalling NaNs are quieted,
the first NaN in operand order wins); an invalid operation gives the default NaN.

Emulated: VMOV (immediate, register), VABS, VNEG, VSQRT, VADD, VSUB, VMUL, VNMUL, VDIV,
VMLA, VMLS, VNMLA, VNMLS, VFMA, VFMS, VFNMA, VFNMS, VCMP/VCMPE (register, #0.0), VCVT
F64<->F32, F64<->S32/U32 (VCVT, VCVTR), VCVTA/N/P/M, VRINTA/N/P/M/Z/R/X, VSEL, VMAXNM,
VMINNM, all .F64. Not emulated (a clear ``ToolchainError``): fixed-point and half-precision
conversions, a directed FPSCR rounding mode for arithmetic, instructions inside an IT block.
The cumulative exception flags (FPSCR IOC, DZC, OFC, UFC, IXC) are not updated.

FPSCR.NZCV of VCMP: Unicorn ignores writes to FPSCR from outside, so the hook lets the
emulated core set the flags itself: it runs a VCMP.F32 on two single-precision values that
compare the same way, from a two-instruction trampoline outside the image (not counted),
and restores the registers it borrowed.
"""

from __future__ import annotations

import math
import struct
from fractions import Fraction

import unicorn
from unicorn import arm_const as A

from kiloml.errors import ToolchainError

TRAMPOLINE = 0x0F000000           # a page outside flash and RAM (emulator.py maps neither)
TRAMPOLINE_SIZE = 0x1000
# vcmp.f32 s0, s1 ; udf #0  (the UDF hands control back to the hook)
TRAMPOLINE_CODE = struct.pack("<HHH", 0xEEB4, 0x0A60, 0xDE00)
DEFAULT_NAN = 0x7FF8000000000000
SIGN = 1 << 63
QUIET = 1 << 51
EXP_MASK = 0x7FF << 52
FRAC_MASK = (1 << 52) - 1
D_REGS = [getattr(A, f"UC_ARM_REG_D{i}") for i in range(16)]
S_REGS = [getattr(A, f"UC_ARM_REG_S{i}") for i in range(32)]


class NotEmulated(Exception):
    """A double-precision encoding this module does not implement."""


# ---- IEEE double helpers on bit patterns (Python floats are IEEE binary64, round to nearest)

def f(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


def b(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def is_nan(x: int) -> bool:
    return (x & EXP_MASK) == EXP_MASK and (x & FRAC_MASK) != 0


def is_snan(x: int) -> bool:
    return is_nan(x) and not (x & QUIET)


def neg(x: int) -> int:
    """FPNeg: flips the sign bit, NaNs included."""
    return x ^ SIGN


def process_nans(*ops: int) -> int | None:
    """FPProcessNaNs / FPProcessNaNs3: the first signalling NaN (quieted), else the first
    quiet NaN, in operand order; None when no operand is a NaN."""
    for x in ops:
        if is_snan(x):
            return x | QUIET
    for x in ops:
        if is_nan(x):
            return x
    return None


def _round(q: Fraction) -> int:
    """An exact rational rounded to the nearest double (ties to even); overflow gives inf.
    Zero is returned as +0 (callers decide the sign of an exact zero)."""
    try:
        return b(q.numerator / q.denominator)  # int true division rounds correctly
    except OverflowError:
        return b(math.inf if q > 0 else -math.inf)


def fp_add(x: int, y: int) -> int:
    n = process_nans(x, y)
    if n is not None:
        return n
    a, c = f(x), f(y)
    if math.isinf(a) and math.isinf(c) and (a > 0) != (c > 0):
        return DEFAULT_NAN
    return b(a + c)


def fp_sub(x: int, y: int) -> int:
    """FPSub: NaNs are processed as they are (not negated), then x + (-y)."""
    n = process_nans(x, y)
    return n if n is not None else fp_add(x, neg(y))


def fp_mul(x: int, y: int) -> int:
    n = process_nans(x, y)
    if n is not None:
        return n
    a, c = f(x), f(y)
    if (math.isinf(a) and c == 0) or (a == 0 and math.isinf(c)):
        return DEFAULT_NAN
    return b(a * c)


def fp_div(x: int, y: int) -> int:
    n = process_nans(x, y)
    if n is not None:
        return n
    a, c = f(x), f(y)
    sign = (x ^ y) & SIGN
    if (math.isinf(a) and math.isinf(c)) or (a == 0 and c == 0):
        return DEFAULT_NAN
    if math.isinf(a) or c == 0:
        return sign | EXP_MASK
    if math.isinf(c) or a == 0:
        return sign
    return b(a / c)


def fp_sqrt(x: int) -> int:
    n = process_nans(x)
    if n is not None:
        return n
    a = f(x)
    if a == 0:
        return x                      # sqrt(-0) = -0
    if a < 0:
        return DEFAULT_NAN
    return b(math.sqrt(a))            # correctly rounded (IEEE sqrt)


def fp_muladd(addend: int, x: int, y: int) -> int:
    """FPMulAdd: addend + x * y with one rounding."""
    a, p, q = f(addend), f(x), f(y)
    inf_zero = (math.isinf(p) and q == 0) or (p == 0 and math.isinf(q))
    if is_nan(addend) and not is_snan(addend) and inf_zero:
        return DEFAULT_NAN
    n = process_nans(addend, x, y)
    if n is not None:
        return n
    if inf_zero:
        return DEFAULT_NAN
    sign_p = (x ^ y) & SIGN
    if math.isinf(p) or math.isinf(q):
        if math.isinf(a) and (addend & SIGN) != sign_p:
            return DEFAULT_NAN
        return sign_p | EXP_MASK
    if math.isinf(a):
        return addend
    exact = Fraction(a) + Fraction(p) * Fraction(q)
    if exact == 0:
        if a == 0 and (p == 0 or q == 0) and (addend & SIGN) and sign_p:
            return SIGN               # (-0) + (-0): -0
        return 0                      # an exact zero sum rounds to +0 (round to nearest)
    r = _round(exact)
    if r & ~SIGN == 0:                # underflow to zero keeps the sign of the exact result
        return SIGN if exact < 0 else 0
    return r


def fp_compare(x: int, y: int) -> str:
    """'lt', 'eq', 'gt' or 'un' (unordered)."""
    if is_nan(x) or is_nan(y):
        return "un"
    a, c = f(x), f(y)
    return "eq" if a == c else ("lt" if a < c else "gt")


def round_int(x: float, mode: str) -> int:
    """FPRoundInt's integer for a finite double: mode 'N' ties to even, 'A' ties away,
    'P' toward +inf, 'M' toward -inf, 'Z' toward zero."""
    fl = math.floor(x)
    frac = x - fl                     # exact for a double
    if mode == "M":
        return fl
    if mode == "P":
        return fl + (frac > 0)
    if mode == "Z":
        return math.trunc(x)
    if frac > 0.5:
        return fl + 1
    if frac < 0.5:
        return fl
    if mode == "A":
        return fl + 1 if x > 0 else fl
    return fl if fl % 2 == 0 else fl + 1


def fp_round_int(x: int, mode: str) -> int:
    n = process_nans(x)
    if n is not None:
        return n
    a = f(x)
    if math.isinf(a) or a == 0:
        return x
    r = round_int(a, mode)
    return (x & SIGN) if r == 0 else b(float(r))


def fp_to_int(x: int, mode: str, signed: bool) -> int:
    """FPToFixed with 0 fraction bits into 32 bits: NaN -> 0, saturating."""
    if is_nan(x):
        return 0
    a = f(x)
    lo, hi = (-(1 << 31), (1 << 31) - 1) if signed else (0, (1 << 32) - 1)
    if math.isinf(a):
        return (hi if a > 0 else lo) & 0xFFFFFFFF
    return max(lo, min(hi, round_int(a, mode))) & 0xFFFFFFFF


def f32_to_f64(s: int) -> int:
    """FPConvert single -> double: exact; a NaN keeps its sign and payload, quieted."""
    sign = (s >> 31) & 1
    exp, frac = (s >> 23) & 0xFF, s & 0x7FFFFF
    if exp == 0xFF and frac:
        return (sign << 63) | EXP_MASK | QUIET | (frac << 29)
    return b(struct.unpack("<f", struct.pack("<I", s))[0])


def f64_to_f32(x: int) -> int:
    """FPConvert double -> single, round to nearest: a NaN keeps its sign and the top of
    its payload, quieted; overflow gives inf."""
    if is_nan(x):
        return ((x >> 32) & 0x80000000) | 0x7FC00000 | ((x >> 29) & 0x3FFFFF)
    a = f(x)
    if math.isinf(a) or a == 0:
        return ((x >> 32) & 0x80000000) | (0x7F800000 if math.isinf(a) else 0)
    q = Fraction(a)
    # round to 24 significant bits (subnormals: to a multiple of 2^-149), ties to even
    e = max(math.floor(math.log2(abs(a))) - 23, -149)
    while abs(q) >= Fraction(2) ** (e + 24):  # log2 may be off by one near powers of 2
        e += 1
    while e > -149 and abs(q) < Fraction(2) ** (e + 23):
        e -= 1
    m = q / Fraction(2) ** e
    r = round(m)                      # Fraction round: ties to even
    v = Fraction(r) * Fraction(2) ** e
    if abs(v) >= Fraction(2) ** 128 - Fraction(2) ** 103:  # beyond the largest single
        return ((x >> 32) & 0x80000000) | 0x7F800000
    bits = struct.unpack("<I", struct.pack("<f", float(v)))[0]  # exact: v is a single
    if v == 0:
        bits = (x >> 32) & 0x80000000
    return bits


def expand_imm(imm8: int) -> int:
    """VFPExpandImm for 64 bits."""
    sign = (imm8 >> 7) & 1
    b6 = (imm8 >> 6) & 1
    exp = ((b6 ^ 1) << 10) | ((0xFF if b6 else 0) << 2) | ((imm8 >> 4) & 3)
    return (sign << 63) | (exp << 52) | ((imm8 & 0xF) << 48)


def fp_maxmin_num(x: int, y: int, want_max: bool) -> int:
    """FPMaxNum / FPMinNum: a quiet NaN against a number gives the number."""
    if is_nan(x) and not is_snan(x) and not is_nan(y):
        x = (SIGN | EXP_MASK) if want_max else EXP_MASK
    elif is_nan(y) and not is_snan(y) and not is_nan(x):
        y = (SIGN | EXP_MASK) if want_max else EXP_MASK
    n = process_nans(x, y)
    if n is not None:
        return n
    a, c = f(x), f(y)
    if a == c == 0:  # +0 vs -0: max +0 unless both negative, min -0 if either negative
        return (x & y) if want_max else (x | y)
    return x if (a > c) == want_max else y


# ---- decoding (T32 encodings of A7.7; `i` = first halfword << 16 | second halfword)

ROUND_MODES = {0: "N", 1: "P", 2: "M", 3: "Z"}  # FPSCR.RMode


def is_double_fp(i: int) -> bool:
    """A VFP data-processing instruction with a double-precision operand or result."""
    if (i >> 24) & 0xEF != 0xEE or (i >> 9) & 7 != 5 or i & 0x10:
        return False
    if i & 0x100:
        return True
    # sz = 0: only VCVT.F64.F32 (opc1 1x11, opc2 0111, opc3 11) writes a double
    return (i >> 20) & 0xB == 0xB and (i >> 16) & 0xF == 7 and (i >> 6) & 3 == 3


def execute(i: int, read, write, fpscr: int, apsr: int):
    """Execute double-precision instruction ``i``. ``read(kind, n)`` / ``write(kind, n, v)``
    access D (kind 'd') and S ('s') registers as integers; returns None, or ('cmp', outcome)
    for VCMP (the caller sets FPSCR.NZCV)."""
    D = (i >> 22) & 1
    vn, vd, vm = (i >> 16) & 0xF, (i >> 12) & 0xF, i & 0xF
    N, M = (i >> 7) & 1, (i >> 5) & 1
    op6 = (i >> 6) & 1
    d, n, m = (D << 4) | vd, (N << 4) | vn, (M << 4) | vm
    sd, sm = (vd << 1) | D, (vm << 1) | M
    rd = lambda r: read("d", r)  # noqa: E731
    rmode = ROUND_MODES[(fpscr >> 22) & 3]

    if i >> 28 == 0xF:  # FPv5 unconditional: VSEL, VMAXNM/VMINNM, VRINTx, VCVTx
        if (i >> 23) & 1 == 0:
            cc = (i >> 20) & 3
            nf, zf, vf = (apsr >> 31) & 1, (apsr >> 30) & 1, (apsr >> 28) & 1
            cond = [zf == 1, vf == 1, nf == vf, zf == 0 and nf == vf][cc]
            write("d", d, rd(n) if cond else rd(m))
            return None
        if (i >> 20) & 3 == 0:
            write("d", d, fp_maxmin_num(rd(n), rd(m), want_max=op6 == 0))
            return None
        if (i >> 20) & 3 == 3 and (i >> 6) & 1 == 1:
            mode = "ANPM"[(i >> 16) & 3]
            if (i >> 18) & 3 == 2:
                write("d", d, fp_round_int(rd(m), mode))
                return None
            if (i >> 18) & 3 == 3:
                write("s", sd, fp_to_int(rd(m), mode, signed=bool((i >> 7) & 1)))
                return None
        raise NotEmulated("unknown FPv5 unconditional encoding")

    opc1 = (i >> 20) & 0xB
    if opc1 != 0xB:
        x, y, acc = rd(n), rd(m), rd(d)
        if opc1 == 0x0:    # VMLA / VMLS
            p = fp_mul(x, y)
            r = fp_add(acc, neg(p) if op6 else p)
        elif opc1 == 0x1:  # VNMLS / VNMLA
            p = fp_mul(x, y)
            r = fp_add(neg(acc), neg(p) if op6 else p)
        elif opc1 == 0x2:  # VMUL / VNMUL
            r = fp_mul(x, y)
            r = neg(r) if op6 else r
        elif opc1 == 0x3:  # VADD / VSUB
            r = fp_sub(x, y) if op6 else fp_add(x, y)
        elif opc1 == 0x8 and not op6:  # VDIV
            r = fp_div(x, y)
        elif opc1 == 0x9:  # VFNMS (op 0) / VFNMA (op 1)
            r = fp_muladd(neg(acc), neg(x) if op6 else x, y)
        elif opc1 == 0xA:  # VFMA (op 0) / VFMS (op 1)
            r = fp_muladd(acc, neg(x) if op6 else x, y)
        else:
            raise NotEmulated("unknown data-processing opcode")
        if opc1 in (0x0, 0x1, 0x2, 0x3, 0x8) and rmode != "N":
            raise NotEmulated(f"FPSCR rounding mode {rmode} (only round to nearest)")
        write("d", d, r)
        return None

    opc2, opc3 = (i >> 16) & 0xF, (i >> 6) & 3
    if opc3 & 1 == 0:  # VMOV immediate
        write("d", d, expand_imm((((i >> 16) & 0xF) << 4) | (i & 0xF)))
        return None
    if opc2 == 0 and opc3 == 1:
        write("d", d, rd(m))                          # VMOV register
    elif opc2 == 0 and opc3 == 3:
        write("d", d, rd(m) & ~SIGN)                  # VABS
    elif opc2 == 1 and opc3 == 1:
        write("d", d, neg(rd(m)))                     # VNEG
    elif opc2 == 1 and opc3 == 3:
        if rmode != "N":
            raise NotEmulated(f"FPSCR rounding mode {rmode} (only round to nearest)")
        write("d", d, fp_sqrt(rd(m)))                 # VSQRT
    elif opc2 in (4, 5):                              # VCMP / VCMPE
        return ("cmp", fp_compare(rd(d), 0 if opc2 == 5 else rd(m)))
    elif opc2 == 6:                                   # VRINTR (op 0) / VRINTZ (op 1)
        write("d", d, fp_round_int(rd(m), "Z" if (i >> 7) & 1 else rmode))
    elif opc2 == 7 and opc3 == 1:                     # VRINTX
        write("d", d, fp_round_int(rd(m), rmode))
    elif opc2 == 7 and opc3 == 3:                     # VCVT between double and single
        if i & 0x100:
            if rmode != "N":
                raise NotEmulated(f"FPSCR rounding mode {rmode} (only round to nearest)")
            write("s", sd, f64_to_f32(rd(m)))          # VCVT.F32.F64 Sd, Dm
        else:
            write("d", d, f32_to_f64(read("s", sm)))  # VCVT.F64.F32 Dd, Sm
    elif opc2 == 8:                                   # VCVT.F64.S32 / .U32 Dd, Sm
        v = read("s", sm)
        if (i >> 7) & 1 and v & 0x80000000:
            v -= 1 << 32
        write("d", d, b(float(v)))                   # exact: 32-bit integers fit a double
    elif opc2 in (0xC, 0xD):                          # VCVT(R).S32/U32.F64 Sd, Dm
        mode = "Z" if (i >> 7) & 1 else rmode
        write("s", sd, fp_to_int(rd(m), mode, signed=opc2 == 0xD))
    else:
        raise NotEmulated("half-precision or fixed-point conversion")
    return None


def install(uc: unicorn.Uc) -> None:
    """Map the trampoline and add the invalid-instruction hook to ``uc`` (a Cortex-M7 with
    its FPU enabled)."""
    uc.mem_map(TRAMPOLINE, TRAMPOLINE_SIZE, unicorn.UC_PROT_READ | unicorn.UC_PROT_EXEC)
    uc.mem_write(TRAMPOLINE, TRAMPOLINE_CODE)
    saved: dict = {}

    def read(kind, r):
        return uc.reg_read((D_REGS if kind == "d" else S_REGS)[r])

    def write(kind, r, v):
        uc.reg_write((D_REGS if kind == "d" else S_REGS)[r], v)

    def fail(pc, why):
        raise ToolchainError(f"emulation fault at pc=0x{pc:08x}: {why}")

    def on_invalid(uc_, _user) -> bool:
        pc = uc.reg_read(A.UC_ARM_REG_PC) & ~1
        if pc == TRAMPOLINE + 4 and saved:        # back from the VCMP.F32
            uc.reg_write(S_REGS[0], saved["s0"])
            uc.reg_write(S_REGS[1], saved["s1"])
            uc.reg_write(A.UC_ARM_REG_PC, saved.pop("ret") | 1)
            saved.clear()
            return True
        if not (0 <= pc < TRAMPOLINE):
            return False
        hw = struct.unpack("<HH", bytes(uc.mem_read(pc, 4)))
        i = (hw[0] << 16) | hw[1]
        if not is_double_fp(i):
            return False                          # a real invalid instruction: fault
        xpsr = uc.reg_read(A.UC_ARM_REG_XPSR)
        if (xpsr >> 10) & 0x3F or (xpsr >> 25) & 3:
            fail(pc, f"double-precision instruction 0x{i:08x} in an IT block (not emulated)")
        try:
            res = execute(i, read, write, uc.reg_read(A.UC_ARM_REG_FPSCR), xpsr)
        except NotEmulated as e:
            fail(pc, f"double-precision instruction 0x{i:08x} not emulated: {e}")
        except IndexError:  # D16-D31: not on an FPv5-D16 FPU
            fail(pc, f"double-precision instruction 0x{i:08x} names a register above D15")
        if res is None:
            uc.reg_write(A.UC_ARM_REG_PC, (pc + 4) | 1)
            return True
        # VCMP: two singles that compare like the doubles, compared by the core itself
        a, c = {"lt": (0, 0x3F800000), "eq": (0, 0), "gt": (0x3F800000, 0),
                "un": (0x7FC00000, 0)}[res[1]]
        saved.update(s0=read("s", 0), s1=read("s", 1), ret=pc + 4)
        write("s", 0, a)
        write("s", 1, c)
        uc.reg_write(A.UC_ARM_REG_PC, TRAMPOLINE | 1)
        return True

    uc.hook_add(unicorn.UC_HOOK_INSN_INVALID, on_invalid)
