"""``lumbar-monai`` command line: a thin dispatcher over ``lumbar_monai.commands.<name>`` modules.

Each command module exposes ``add_parser(subparsers)`` (registers its sub-command and sets ``func``) and does its
heavy imports inside ``run`` so that ``lumbar-monai --help`` stays fast. Add a command by listing its module below.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from . import __version__

COMMANDS = ("synth", "demo", "predict", "evaluate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lumbar-monai", description="Lumbar spine and sacrum landmarks on X-rays (An et al. 2022) with MONAI."
    )
    parser.add_argument("--version", action="version", version=f"lumbar-monai {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"lumbar_monai.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"lumbar_monai.commands.{name}":
                continue  # command not part of this build
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    # DICOM libraries quote data set values (person names among them) in their records and warnings: their INFO
    # chatter stays off, and warnings go through logging (the writers withhold theirs, see lumbar_monai.io.quiet)
    for name in ("highdicom", "pydicom"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
