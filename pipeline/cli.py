"""`kadn`: one entry point for every stage. Each subcommand lives in its own module with `register(sub)`.

Errors the user can act on (KadnError) print as one line on stderr and exit 1; bad usage exits 2.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import importlib
import logging
import os
import signal
import sys
import threading
from importlib import metadata

from pipeline.errors import KadnError

# name -> (module defining register(subparsers, name), one line for `kadn --help`). `kadn --help` lists the
# commands from this table alone and `kadn COMMAND` imports only its own module, so listing the commands or
# running `kadn export` never loads torch, pandas or scrapy.
COMMANDS = {
    "import": ("pipeline.commands.transfer", "upsert an existing export (ours, the CC0 CSV, moviedata-10m)"),
    "export": ("pipeline.commands.transfer", "print one record per stored movie"),
    "snapshot": ("pipeline.commands.snapshot", "write the stored films as a canonical snapshot (the input of clean)"),
    "clean": ("pipeline.commands.clean", "apply the date range and the paper's four cleaning rules"),
    "encode": ("pipeline.commands.encode", "build feature groups, vocabularies and splits from the cleaned table"),
    "metrics": ("pipeline.commands.metrics", "gather data and model figures into metrics.json"),
    "train": ("models.stages.train", "train one model (and cross-validate it) on the encoded features"),
    "evaluate": ("models.stages.evaluate", "score every trained model on the test split; Table 2; figures"),
    "blend": ("models.stages.blend", "stack the student and the strongest baselines on their out-of-fold predictions"),
    "backtest": ("models.stages.backtest", "train on the films before each year, score that year's films"),
    "forecast": ("models.serving.forecast", "score the films with no usable score yet, with intervals and reasons"),
    "predict": ("models.serving.forecast", "alias of `kadn forecast`"),
    "scorecard": ("models.serving.scorecard", "how the recorded forecasts did once the films' scores appeared"),
    "mock-douban": ("crawler.mocksite.site", "serve a synthetic Douban catalogue on 127.0.0.1 (for crawler tests)"),
}


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
            importlib.import_module(module).register(sub, name)
        else:
            sub.add_parser(name, help=summary)  # listed only; its module is imported when it is asked for
    return parser


class Terminated(BaseException):
    """SIGTERM, raised where the command is: a BaseException, so no `except Exception` swallows it, and open
    transactions roll back on the way out as on Ctrl-C."""


def _on_sigterm(main_pid: int, signum, frame) -> None:
    if os.getpid() != main_pid:  # a forked worker: die as it would have without this handler
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    raise Terminated


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush of what could not be written (a reader
    that left, a full disk) is not a second error after the one line already said."""
    # Not when stdout is no file (an in-process caller's buffer).
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def os_error_line(exc: OSError) -> str:
    """An OSError no command anticipated, as one line: the file it names and what happened to it."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ELOOP:
        reason = "symlink loop"
    if exc.filename is not None:
        return f"{exc.filename}: {reason}"
    return f"cannot write the output: {reason}" if exc.errno in _WRITE_ERRORS else reason


# Errors of writing to a stream with no file name: standard output on a full disk, a broken device.
_WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        return _run(args)
    previous = signal.signal(signal.SIGTERM, functools.partial(_on_sigterm, os.getpid()))
    try:
        return _run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args) -> int:
    """The command, with every class of failure a user can meet turned into one line and an exit code."""
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a reader that left shows here, inside the handler, not at interpreter exit
        return code
    except KadnError as exc:
        print(f"kadn {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `kadn export | head`: the reader left; say nothing more and exit as a command killed by SIGPIPE.
        _quiet_stdout()
        return 141
    except KeyboardInterrupt:
        print(f"kadn {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"kadn {args.command}: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except OSError as exc:
        # A file or stream that cannot be read or written (a full disk under stdout, a directory named as a
        # file): what happened, in one line, whichever command met it.
        if exc.filename is None:  # most likely stdout itself
            _quiet_stdout()
        print(f"kadn {args.command}: error: {os_error_line(exc)}", file=sys.stderr)
        return 1
    except UnicodeError as exc:
        # Text that is not Unicode (a lone surrogate) or not UTF-8, met where no reader checked for it.
        print(f"kadn {args.command}: error: not valid Unicode text ({exc.reason})", file=sys.stderr)
        return 1
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
