"""`kadn`: one entry point for every stage. Each subcommand lives in its own module with `register(sub)`.

Errors the user can act on (KadnError) print as one line on stderr and exit 1; bad usage exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from importlib import metadata
from pathlib import Path

from pipeline.errors import KadnError

# name -> (module defining register(subparsers, name), one line for `kadn --help`). `kadn --help` lists the
# commands from this table alone and `kadn COMMAND` imports only its own module, so listing the commands or
# running `kadn export` never loads torch, pandas or scrapy.
COMMANDS = {
    "import": ("pipeline.commands", "upsert an existing export (ours, the CC0 CSV, moviedata-10m)"),
    "export": ("pipeline.commands", "print one record per stored movie"),
    "snapshot": ("pipeline.snapshot", "write the stored films as a canonical snapshot (the input of clean)"),
    "clean": ("pipeline.clean", "apply the date range and the paper's four cleaning rules"),
    "encode": ("pipeline.encode", "build feature groups, vocabularies and splits from the cleaned table"),
    "metrics": ("pipeline.metrics", "gather data and model figures into metrics.json"),
    "train": ("models.train", "train one model (and cross-validate it) on the encoded features"),
    "evaluate": ("models.evaluate", "score every trained model on the test split; Table 2; figures"),
    "blend": ("models.blend", "stack the student and the strongest baselines on their out-of-fold predictions"),
    "backtest": ("models.backtest", "train on the films before each year, score that year's films"),
    "forecast": ("models.forecast", "score the films with no usable score yet, with intervals and reasons"),
    "predict": ("models.forecast", "alias of `kadn forecast`"),
    "scorecard": ("models.scorecard", "how the recorded forecasts did once the films' scores appeared"),
    "mock-douban": ("tests.mockserver.site", "serve a synthetic Douban catalogue on 127.0.0.1 (for crawler tests)"),
}
# Commands served by a test fixture, which a source checkout has and an installed package has not.
CHECKOUT = Path(__file__).resolve().parents[1]
FIXTURES = {"mock-douban": CHECKOUT / "tests" / "mockserver"}


def _fixture_found(name: str) -> bool:
    """A fixture command's home exists (and is importable from here), or the command is not a fixture."""
    home = FIXTURES.get(name)
    if home is None:
        return True
    if not (home / "__init__.py").is_file():
        return False
    if str(CHECKOUT) not in sys.path:
        sys.path.insert(0, str(CHECKOUT))  # `kadn` runs from its install's bin/, not from the checkout
    return True


class Parser(argparse.ArgumentParser):
    """Every (sub)command's help shows each option's default."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)


def version() -> str:
    try:
        return metadata.version("douban-kadn")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = Parser(prog="kadn", description="Douban films to K-ADN: store, clean, encode, train, evaluate, predict "
                    "(the commands the DVC stages run).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    wanted = next((a for a in argv if a in COMMANDS), None)
    for name, (module, summary) in COMMANDS.items():
        if name == wanted:
            if not _fixture_found(name):
                raise SystemExit(f"kadn {name}: error: this command serves a test fixture ({FIXTURES[name].name} "
                                 "under tests/), which only a source checkout has; run it from a checkout")
            importlib.import_module(module).register(sub, name)
        elif FIXTURES.get(name) is None or FIXTURES[name].is_dir():
            sub.add_parser(name, help=summary)  # listed only; its module is imported when it is asked for
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a reader that left shows here, inside the handler, not at interpreter exit
        return code
    except KadnError as exc:
        print(f"kadn {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `kadn export | head`: the reader left; say nothing more and exit as a command killed by SIGPIPE.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print(f"kadn {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # A database failure no stage anticipated: one line, not a traceback. (sqlalchemy is looked up, not
        # imported: commands that never touch a database do not pay for it.)
        sa = sys.modules.get("sqlalchemy.exc")
        if sa is None or not isinstance(exc, sa.SQLAlchemyError):
            raise
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        print(f"kadn {args.command}: database error: {exc.__class__.__name__}: {reason}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
