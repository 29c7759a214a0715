"""Small I/O helpers every stage shares: checked inputs, atomic writes and params.yaml sections."""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import KadnError

# What a path that is not a regular file is, for the one line that refuses it.
_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a file")


def _stat_error(path: Path, exc: OSError, missing: str = "no such file") -> KadnError:
    """An OSError from stat() or open() as the one line a user can act on (`missing`: what to say when
    there is no such file)."""
    if exc.errno == errno.ELOOP:
        return KadnError(f"{path}: symlink loop")
    if exc.errno == errno.ENOENT and path.is_symlink():
        return KadnError(f"{path}: a symlink to a missing file ({os.readlink(path)})")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return KadnError(f"{path}: {missing}")
    return KadnError(f"{path}: cannot read: {exc.strerror or exc}")


def input_file(path: str | Path, missing: str = "no such file") -> Path:
    """`path` if it names a non-empty regular file; else a KadnError saying what it is instead."""
    if str(path) == "-":
        raise KadnError("-: reading standard input is not supported; save the input to a file and name it")
    path = Path(path)
    try:
        info = path.stat()
    except OSError as exc:
        raise _stat_error(path, exc, missing) from None
    except ValueError:  # a NUL byte in the name
        raise KadnError(f"{path!r}: not a usable file name") from None
    if stat.S_ISDIR(info.st_mode):
        raise KadnError(f"{path}: is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise KadnError(f"{path}: not a regular file ({_kind(info.st_mode)})")
    if info.st_size == 0:
        raise KadnError(f"{path}: empty file")
    return path


def read_text(path: str | Path, missing: str = "no such file") -> str:
    """The UTF-8 text of a checked input file (a leading byte-order mark dropped); one line on any failure."""
    path = input_file(path, missing)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _stat_error(path, exc) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise KadnError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _big_int(digits: str) -> int | Decimal:
    # int() refuses more than 4300 digits with a ValueError that names no field; a Decimal reaches the
    # record check, which refuses it by field name.
    return int(digits) if len(digits) <= 4000 else Decimal(digits)


def jsonl_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of JSON Lines text, empty lines left out. Lines end at "\\n" only: a string may
    hold U+2028, U+2029 or U+0085 unescaped, where str.splitlines() would break it."""
    for number, line in enumerate(text.split("\n"), 1):
        if line:
            yield number, line


def loads(text: str) -> Any:
    """json.loads, with every way JSON text can fail as one JSONDecodeError-like ValueError message."""
    try:
        return json.loads(text, parse_int=_big_int)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{exc.msg} (line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None


def read_json_object(path: str | Path, missing: str = "no such file") -> dict:
    """A JSON file holding one object (a stage's report, a metrics fragment); one line on anything else."""
    try:
        data = loads(read_text(path, missing))
    except ValueError as exc:
        raise KadnError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise KadnError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def output_target(target: str | Path) -> Path:
    """`target` if it is a new path or a regular file to replace: a rename over a FIFO, a device or a
    directory would replace what the user named with a plain file (or fail half-way)."""
    target = Path(target)
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        return target
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise KadnError(f"{target}: symlink loop") from None
        if exc.errno == errno.ENOTDIR:
            raise KadnError(f"{target}: cannot write: a parent is not a directory") from None
        raise KadnError(f"{target}: cannot write: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise KadnError(f"{target}: is a directory; name the file to write")
    if not stat.S_ISREG(mode):
        raise KadnError(f"{target}: not a regular file ({_kind(mode)}); name a new or regular file to write")
    return target


@contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it over `target` only if the block succeeds.

    `target` must be a new path or a regular file; an OSError (full disk, a parent that is a file) is one
    KadnError naming `target`, and the temporary file never outlives the block."""
    target = output_target(target)
    tmp_path = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        # mkstemp makes the file private (0600); give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, target)
    except OSError as exc:
        raise KadnError(f"{target}: cannot write: {exc.strerror or exc}") from None
    finally:
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)


def write_json(target: str | Path, data: Any) -> None:
    with atomic_path(target, ".json") as tmp:
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def load_params(path: str | Path = "params.yaml", section: str | None = None) -> dict:
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise KadnError(f"{path}: no such file (run from the repository root or pass --params)") from None
    except yaml.YAMLError as exc:
        raise KadnError(f"{path}: not valid YAML: {exc}") from None
    if section is None:
        return params
    if section not in params:
        raise KadnError(f"{path}: no '{section}' section")
    return params[section]
