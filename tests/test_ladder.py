import json
import math
import re
from contextlib import redirect_stdout
from io import StringIO

import pytest

from nanogpt.config import preset
from nanogpt.course.ladder import QUIET, ROWS, command_for, gpt_row, main
from nanogpt.flags import config_from_args


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One --quick ladder, shared by the tests: (stdout, the --out file's text)."""
    tmp = tmp_path_factory.mktemp("ladder")
    out = StringIO()
    with redirect_stdout(out):
        code = main(["--quick", "--steps", "50", "--out-dir", str(tmp / "runs"), "--out", str(tmp / "l.md")])
    assert code == 0
    return out.getvalue(), (tmp / "l.md").read_text()


def test_quick_ladder_prints_both_tables_with_every_row(quick):
    stdout, written = quick
    assert stdout == written  # --out writes exactly what is printed
    assert stdout.startswith("Names (makemore part 3)") and "Tiny Shakespeare" in stdout
    table_rows = [line for line in stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(table_rows) == 2 + len(ROWS)  # two headers, then one line per row
    for row, line in zip(ROWS, table_rows[1:6] + table_rows[7:], strict=True):
        assert line.startswith(f"| {row.label.split('{')[0]}"), (row.key, line)
        assert "`python -m nanogpt." in line  # the command that reproduces it
        numbers = [float(x) for x in re.findall(r"\| (\d+\.\d{4}) ", line)]
        assert numbers and all(math.isfinite(x) for x in numbers)
    assert "2.4546 | 2.4819" in stdout  # the count bigram needs no steps: exact even in --quick


def test_each_row_command_rebuilds_the_settings_it_ran_with():
    for row in ROWS:
        if row.preset is None:
            continue
        settings = {**row.settings, "seed": 7}
        argv = command_for(row, settings).split()[3:]  # after `python -m nanogpt.train`
        rebuilt = config_from_args(argv)
        expected = preset(row.preset, **settings)
        skip = set(QUIET) | {"out_dir"}
        assert {k: v for k, v in rebuilt.to_dict().items() if k not in skip} == \
            {k: v for k, v in expected.to_dict().items() if k not in skip}, row.key


def test_gpt_row_comes_from_a_finished_run_or_is_skipped(tmp_path, capsys):
    assert gpt_row(str(tmp_path)) is None
    records = [{"kind": "eval", "iter": 10, "train_loss": 2.0, "val_loss": 2.1, "time": 61.0},
               {"kind": "final", "iter": 10, "train_loss": 1.5, "val_loss": 1.7}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    row = gpt_row(str(tmp_path))
    assert (row.train, row.val, row.seconds) == (1.5, 1.7, 61.0)
    assert main(["--rows", "shakespeare-count", "--with-gpt", "--gpt-run", str(tmp_path / "none")]) == 0
    assert "no finished GPT run" in capsys.readouterr().out


def test_a_bad_flag_is_a_one_line_error_with_status_2(capsys):
    assert main(["--rows", "no-such-row"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert main(["--steps", "0"]) == 2
