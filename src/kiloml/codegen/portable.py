"""The portable kernel backend: every node calls the kernel its op's ``emit`` writes (plain
C99 in ``codegen/runtime/portable``, one ``kml_<module>.c`` per module), no scratch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kiloml.ir.graph import Graph, Node
from kiloml.ir.ops import REGISTRY

if TYPE_CHECKING:  # pragma: no cover
    from kiloml.codegen.c import EmitContext


class PortableBackend:
    """See ``kiloml.codegen.backend.Backend``; other backends extend this one and fall back
    to it for the nodes they have nothing better for."""

    name = "portable"
    directory = "portable"

    def scratch_bytes(self, g: Graph, node: Node) -> int:
        return 0

    def emit(self, g: Graph, node: Node, params: Any, ctx: "EmitContext") -> list[str]:
        return REGISTRY[node.op].emit(g, node, params, ctx)

    def sources(self, module: str, functions: set[str]) -> list[str]:
        return [f"kml_{module}.c"]
