"""The command line's own behaviour: options in either place, errors and exit codes."""

from __future__ import annotations

import json

import pytest

from cimlib import cli


@pytest.mark.parametrize(
    "argv",
    [["--json", "status"], ["status", "--json"], ["--home", "/x", "status", "--json"]],
)
def test_global_options_before_or_after_command(argv: list[str]) -> None:
    args = cli.build_parser().parse_args(argv)
    assert args.json is True
    assert args.command == "status"


def test_home_option_after_command() -> None:
    args = cli.build_parser().parse_args(["build", "--home", "/tmp/bank"])
    assert args.home == "/tmp/bank"


def test_missing_folder_is_usage_error_with_json(tmp_path, capsys) -> None:
    code = cli.main(["ingest", str(tmp_path / "missing"), "--json", "--home", str(tmp_path)])
    assert code == cli.EXIT_USAGE
    out = json.loads(capsys.readouterr().out)
    assert "no such folder" in out["error"]


def test_unknown_command_exits_2() -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["frobnicate"])
    assert exc.value.code == 2


def test_closed_pipe_stops_quietly(tmp_path) -> None:
    """`cim ... | head`: the reader is gone before cim writes; no traceback, exit 141 like Unix tools."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "CIM_HOME": str(tmp_path), "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, "-m", "cimlib.cli", "status", "--json"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the child has written anything (it is still importing)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141, err
    assert b"Traceback" not in err and b"BrokenPipe" not in err
