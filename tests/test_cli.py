"""The `kadn` command line: fast help that lists every command, defaults in every option's help, a version,
quiet exit when the reader of its output leaves, and progress bars for the baselines."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from pipeline.cli import COMMANDS, build_parser, main
from pipeline.film import store
from tests.conftest import film
from tests.model_support import encoded_catalogue, fast_params

BIN = Path(sys.executable).parent
HEAVY = ("torch", "pandas", "sklearn", "scrapy", "lightgbm", "sqlalchemy", "matplotlib")


def test_help_lists_every_command_without_importing_any_of_them():
    probe = ("import sys, contextlib, io\n"
             "from pipeline.cli import main\n"
             "out = io.StringIO()\n"
             "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(out):\n"
             "    main(['--help'])\n"
             f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
             "print(out.getvalue())\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    loaded, _, text = proc.stdout.partition("\n")
    assert loaded == "[]", f"`kadn --help` imported {loaded}"
    for name, (_, summary) in COMMANDS.items():
        assert name in text and summary.split()[0] in text


def _options(parser: argparse.ArgumentParser, name: str) -> list[argparse.Action]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [a for a in sub.choices[name]._actions if not isinstance(a, argparse._HelpAction)]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_option_says_what_it_does_and_its_default(name, capsys):
    parser = build_parser([name])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    formatter = sub._get_formatter()
    for action in _options(parser, name):
        assert action.help, f"kadn {name} {action.option_strings or action.dest}: no help"
        if action.option_strings and action.default not in (None, argparse.SUPPRESS):
            assert "%(default)" in formatter._get_help_string(action), f"kadn {name} {action.option_strings[0]}"
    with pytest.raises(SystemExit):
        main([name, "--help"])
    assert "(default:" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"kadn {metadata.version('douban-kadn')}"


def test_export_into_a_reader_that_leaves_exits_quietly(tmp_path):
    url = f"sqlite:///{tmp_path / 'many.sqlite'}"
    engine = store.connect(url)
    store.upsert_records(engine, [film(i) for i in range(1, 400)], source="test")  # far more than a pipe holds
    engine.dispose()
    env = {**os.environ, "DATABASE_URL": url, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-c", "set -o pipefail; kadn export | head -n 1"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.stdout.count("\n") == 1 and '"douban_id": 1' in proc.stdout
    assert proc.stderr == ""
    assert proc.returncode in (0, 141)


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    enc = encoded_catalogue(folder)
    (folder / "params.yaml").write_text(yaml.safe_dump(fast_params(), allow_unicode=True), encoding="utf-8")
    return folder, enc


@pytest.mark.parametrize("quiet", [False, True])
def test_baselines_show_tuning_and_cv_progress_unless_quiet(encoded, quiet, capsys):
    folder, enc = encoded
    args = ["train", "ridge", "--params", str(folder / "params.yaml"), "--encoded", str(enc),
            "--out", str(folder / f"m{quiet}"), "--feature-sets", "pre_release"]
    # One process: fits in worker processes (train.common.workers) draw no bars of their own.
    params = fast_params()
    params["train"]["common"]["workers"] = 1
    (folder / "serial.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    args[3] = str(folder / "serial.yaml")
    assert main(args + (["--quiet"] if quiet else [])) == 0
    err = capsys.readouterr().err
    assert ("ridge tuning" in err and "ridge CV" in err) is not quiet
    assert ("ridge tuning" in err or "ridge CV" in err) is not quiet
    # With workers, this process still shows the bar over the CV folds.
    args[3] = str(folder / "params.yaml")
    assert main(args + (["--quiet"] if quiet else [])) == 0
    assert ("ridge CV" in capsys.readouterr().err) is not quiet


def test_dvc_shows_the_baselines_progress():
    spec = yaml.safe_load((Path(__file__).resolve().parents[1] / "dvc.yaml").read_text(encoding="utf-8"))
    assert "--quiet" not in spec["stages"]["train_baseline"]["do"]["cmd"]
