"""`kadn`: one entry point for every stage. Each subcommand lives in its own module with `register(sub)`.

Errors the user can act on (KadnError) print as one line on stderr and exit 1; bad usage exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from sqlalchemy.exc import SQLAlchemyError

from pipeline.errors import KadnError

# name -> module defining register(subparsers); imported lazily so `kadn export` never loads torch.
COMMANDS = {
    "import": "pipeline.commands",
    "export": "pipeline.commands",
    "snapshot": "pipeline.snapshot",
    "clean": "pipeline.clean",
    "encode": "pipeline.encode",
    "metrics": "pipeline.metrics",
    "train": "models.train",
    "evaluate": "models.evaluate",
    "predict": "models.predict",
    "mock-douban": "crawler.mock_site",
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kadn", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # Only the module of the command asked for is imported; `kadn --help` lists every command.
    wanted = next((a for a in argv if a in COMMANDS), None)
    for name, module in COMMANDS.items():
        if wanted is None or name == wanted:
            try:
                mod = importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if wanted is None and exc.name == module:
                    continue  # a command whose module is not built yet
                raise
            mod.register(sub, name)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KadnError as exc:
        print(f"kadn {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        # A database failure no stage anticipated: one line, not a traceback.
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        print(f"kadn {args.command}: database error: {exc.__class__.__name__}: {reason}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `kadn export | head`: the reader left; say nothing more and exit quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print(f"kadn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
