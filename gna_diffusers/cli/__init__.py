"""The `gna-diffusers` command. Each subcommand lives in its own module exposing `add_parser(subparsers)`, which
registers the subcommand and sets `func` (taking the parsed args, returning an exit code)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Optional, Sequence

# module names under gna_diffusers.cli, in the order `--help` lists them
SUBCOMMAND_MODULES = ["generate", "compare", "simulate", "recipe", "build_kernels"]


def parse_dims(text: str, option: str) -> tuple[int, ...]:
    """'30x48x80' -> (30, 48, 80); errors name the option."""
    try:
        return tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{option} {text!r}: expected integers joined by 'x', e.g. 30x48x80") from None


def dims_arg(option: str):
    """An argparse `type` for NxMxK options."""
    return lambda text: parse_dims(text, option)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gna-diffusers",
                                     description="Generalized Neighborhood Attention for diffusers pipelines")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (shows backend choices)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
