"""Kernel backends: the interface between the C generator and the kernel runtimes.

An op (``kiloml.ir.ops``) knows its semantics and how to call the portable kernel. A backend
knows a runtime under ``codegen/runtime/<directory>``: for each node, which kernel function
it calls and with which data (packed weights, precomputed requantization), how many bytes of
scratch that kernel needs in the arena, and which runtime source files a model that calls a
set of functions must be given. ``generate_c`` asks the backend of the requested runtime;
``BACKENDS`` holds them by runtime name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from kiloml.codegen.armv6m_backend import Armv6mBackend
from kiloml.codegen.armv7em_backend import Armv7emBackend
from kiloml.codegen.portable import PortableBackend
from kiloml.errors import KilomlError
from kiloml.ir.graph import Graph, Node

if TYPE_CHECKING:  # pragma: no cover
    from kiloml.codegen.c import EmitContext


class Backend(Protocol):
    """What ``generate_c`` needs from a kernel runtime."""

    name: str        # the runtime's name (``generate_c(runtime=...)``, ``--kernels``)
    directory: str   # its directory under codegen/runtime; files it lacks come from portable

    def scratch_bytes(self, g: Graph, node: Node) -> int:
        """Arena bytes the node's kernel needs while it runs (0: none)."""

    def emit(self, g: Graph, node: Node, params: Any, ctx: "EmitContext") -> list[str]:
        """The C statements of the node's function; exactly one is ``ctx.call(kernel, ...)``
        (the kernel the node runs, which ``CompileResult.kernels`` reports)."""

    def sources(self, module: str, functions: set[str]) -> list[str]:
        """The .c files of runtime module ``module`` (``kml_<module>.h``) a model needs when
        it calls ``functions`` (all the kernels the model calls, of every module)."""


BACKENDS: dict[str, Backend] = {b.name: b for b in (PortableBackend(), Armv7emBackend(),
                                                    Armv6mBackend())}


def get_backend(runtime: str, prefer: str = "balanced",
                options: dict[int, str] | None = None) -> Backend:
    """The backend of ``runtime``, making the flash-for-speed choices ``prefer`` asks for
    (``armv7em_choice.PREFERENCES``; the armv7em kernels choose per node, a fresh backend
    per model, which ``plan`` tells its choices; the armv6m kernels drop their bounded
    requantization and zero skipping under "size"; ``options`` pins some, see
    ``generate_c``); an unknown name is a ``KilomlError`` naming the choices."""
    from kiloml.codegen.armv7em_choice import PREFERENCES

    if runtime not in BACKENDS:
        raise KilomlError(f"unknown kernel runtime {runtime!r} (choose from "
                          f"{', '.join(BACKENDS)})")
    if prefer not in PREFERENCES:
        raise KilomlError(f"unknown preference {prefer!r} (choose from "
                          f"{', '.join(PREFERENCES)})")
    if runtime == "armv7em":
        return Armv7emBackend(prefer, options)
    if runtime == "armv6m":
        return Armv6mBackend(prefer)
    return BACKENDS[runtime]
