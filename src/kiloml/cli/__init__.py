"""The ``kiloml`` command line: one module per verb group, each verb a thin call into
kiloml.workflow or a stage; conventions, consoles and errors in ``common``."""

from __future__ import annotations

from kiloml.cli import (bundle, data, deploy, federate, model, personalize, report,  # noqa: F401
                        run, stream, targets, train, tune)  # (register their verbs)
from kiloml.cli.common import app


def main() -> None:
    """Console-script entry point (typer's standalone mode: usage errors exit 2)."""
    app(prog_name="kiloml")


__all__ = ["app", "main"]
