"""Exception types shared by every stage.

The CLI turns a ``KilomlError`` into one line on stderr and exit code 1; anything else is a bug
and shows a traceback only with ``--debug``.
"""

from __future__ import annotations


class KilomlError(Exception):
    """A failure caused by the user's input or environment, reported as one clear line."""


class InvalidModelError(KilomlError):
    """The model file is malformed: truncated, wrong magic, indices out of range, bad shapes."""


class UnsupportedModelError(KilomlError):
    """The model is well formed but uses ops, types or options kiloml does not implement."""


class ToolchainError(KilomlError):
    """A C compiler or other external tool is missing or failed."""


class DataError(KilomlError):
    """A data file cannot be imported: truncated, corrupt, wrong rate or channels, bad values.

    The message names the file (and line or position) and what was expected.
    """


class ProjectError(KilomlError):
    """The project directory or its kiloml.toml / dataset index is missing or invalid."""


class DSPError(KilomlError):
    """Invalid DSP block parameters or input that a block cannot process."""


class UsageError(KilomlError):
    """An argument or option the command cannot take (unknown board, conflicting options).

    The CLI reports it as bad usage: exit code 2."""
