"""Errors a user can fix without reading our code: the CLI prints their message as one line (the traceback with -v).

Validation of arguments, recipes and tensors raises ValueError/TypeError naming the argument, the value and what is
allowed (the CLI treats those as usage errors when our code raised them); the classes here cover what no argument
check can: a missing prerequisite on this machine.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user fixes (the message says how); `exit_code` is what the CLI exits with."""

    exit_code = 1


class UsageError(UserError, ValueError):
    """A bad command line or an unsupported choice (exit code 2, as argparse)."""

    exit_code = 2


class MissingWeightsError(UserError, FileNotFoundError):
    """The model's weights are not on this machine, or the path given is not a diffusers pipeline folder."""


class GPURequiredError(UserError):
    """An option that needs a CUDA GPU (or more GPUs than this machine has)."""


class MissingPackageError(UserError, ImportError):
    """An option needs a Python package that is not installed here (the message names the extra that brings it)."""
