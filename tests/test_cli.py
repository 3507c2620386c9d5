"""The command line: `python -m cropkit run|compare|methods` on the smoke profile."""
import subprocess
import sys

import pandas as pd
import pytest

from cropkit import cli, methods


pytestmark = pytest.mark.usefixtures("one_thread")


def test_run_prints_the_row(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert cli.main(["run", "snap", "--profile", "smoke", "--sparsity", "0.9", "--seed", "0", "--quiet",
                     "--cache-dir", str(tmp_path), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "weight_sparsity" in printed and "node_sparsity" in printed and "snap" in printed
    assert out.exists() and '"history"' in out.read_text()


def test_compare_prints_and_saves_the_table(tmp_path, capsys):
    csv = tmp_path / "t.csv"
    assert cli.main(["compare", "dense", "snap", "--profile", "smoke", "--seeds", "0", "1", "--quiet",
                     "--cache-dir", str(tmp_path), "--csv", str(csv), "--set", "score_batches=1"]) == 0
    printed = capsys.readouterr().out
    assert "Test accuracy" in printed and "SNAP" in printed and "±" in printed
    table = pd.read_csv(csv, index_col=0)
    assert list(table.index) == ["dense", "snap"]
    assert len(pd.read_csv(tmp_path / "t_runs.csv")) == 4


def test_bad_input_is_an_error_message(tmp_path, capsys):
    assert cli.main(["run", "snap", "--profile", "smoke", "--sparsity", "1.5", "--cache-dir", str(tmp_path)]) == 2
    assert "[0, 1)" in capsys.readouterr().err
    assert cli.main(["compare", "snap", "--profile", "smoke", "--set", "nope=1", "--cache-dir", str(tmp_path)]) == 2
    assert "unknown option" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["run", "not-a-method"])


def test_module_entry_point_lists_methods():
    out = subprocess.run([sys.executable, "-m", "cropkit", "methods"], capture_output=True, text=True, check=True)
    assert [line.split()[0] for line in out.stdout.splitlines()] == list(methods.METHODS)
