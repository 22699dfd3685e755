"""The `gna-diffusers` command. Each subcommand lives in its own module exposing `add_parser(subparsers)`, which
registers the subcommand and sets `func` (taking the parsed args, returning an exit code). Subcommand modules import
torch, diffusers and the rest inside `func`, so `--help`, `simulate` and `recipe` start in a fraction of a second.

Errors are sorted here, once: a user error prints one line, `gna-diffusers: error: ...`, to stderr and exits with 2
for usage errors (as argparse does), 1 for a missing prerequisite; `-v` adds the traceback. A user error is an
`errors.UserError`, or a ValueError/TypeError raised by a `raise` statement of this package (our validation, which
names the argument, the value and what is allowed) or of a diffusers pipeline's `check_inputs`. Anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import linecache
import logging
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import NoReturn, Optional, Sequence

from ..errors import UsageError, UserError

PROG = "gna-diffusers"
# module names under gna_diffusers.cli, in the order `--help` lists them
SUBCOMMAND_MODULES = ["generate", "compare", "simulate", "recipe", "env", "build_kernels"]
PACKAGE_DIR = Path(__file__).resolve().parents[1]
THIRD_PARTY_LOGGERS = ("transformers", "diffusers", "huggingface_hub", "torch", "accelerate")


class Parser(argparse.ArgumentParser):
    """argparse, except that a usage mistake raises UsageError (one line from `main`) instead of printing the usage."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def parse_dims(text: str) -> tuple[int, ...]:
    """'30x48x80' -> (30, 48, 80); argparse prefixes errors with the option's name."""
    try:
        return tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not integers joined by 'x' (e.g. 30x48x80)") from None


def positive_int(text: str) -> int:
    """An argparse `type` for counts and sizes (steps, GPUs, pixels): an int >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}; give 1 or more")
    return value


def build_parser() -> Parser:
    parser = Parser(prog=PROG, description="Generalized Neighborhood Attention for diffusers pipelines")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging (backend choices), third-party warnings, and tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    for subparser in sub.choices.values():  # `-v` also after the subcommand; SUPPRESS keeps a `-v` given before it
        subparser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                               help="debug logging, third-party warnings, and tracebacks of errors")
    return parser


def _raised_by_validation(err: BaseException) -> bool:
    """Whether a `raise` statement of this package, or of a diffusers pipeline's `check_inputs`, raised `err` (as
    opposed to a failing call or operation, which is a bug wherever it happens)."""
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    if not linecache.getline(code.co_filename, tb.tb_lineno).lstrip().startswith("raise"):
        return False
    path = Path(code.co_filename).resolve()
    return PACKAGE_DIR in path.parents or (code.co_name == "check_inputs" and "diffusers" in path.parts)


def exit_code_for(err: BaseException) -> Optional[int]:
    """The exit code of a user error, or None for a bug."""
    if isinstance(err, UserError):
        return err.exit_code
    if isinstance(err, (ValueError, TypeError)) and _raised_by_validation(err):
        return 2
    return None


def report(err: BaseException, verbose: bool) -> None:
    """The one line of a user error on stderr, after its traceback with -v."""
    if verbose:
        traceback.print_exception(err)
    print(f"{PROG}: error: {' '.join(str(err).split())}", file=sys.stderr)


def quiet_third_party() -> None:
    """Hide library warnings that have nothing to do with the command (e.g. transformers falling back from a
    torchvision that does not import beside this torch); ours and errors still show, and `-v` keeps them all.
    transformers and diffusers reset their loggers' level when first used, so their verbosity goes through the
    environment variables they read (which also reach the processes `generate --gpus` starts)."""
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=r"gna_diffusers(\.|$)")
    for variable in ("TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY"):
        os.environ.setdefault(variable, "error")
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as err:
        report(err, verbose=False)
        return err.exit_code
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("gna_diffusers").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if not args.verbose:
        quiet_third_party()
    try:
        return int(args.func(args) or 0)
    except Exception as err:
        code = exit_code_for(err)
        if code is None:
            raise
        report(err, args.verbose)
        return code


if __name__ == "__main__":
    sys.exit(main())
