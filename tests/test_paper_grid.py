"""The paper's grid (cropkit.experiments.paper_grid): the dry run lists every configuration of the paper's tables and
figures and prices it with no dataset present; the FLOPs behind the assumed epoch seconds recount; each setting's
printed command is a valid `cropkit sweep`; the ResNeXt pair is priced by name and read by the claims' paper variant."""
import shlex
import types

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from cropkit import cli
from cropkit.experiments import claims, paper_grid
from cropkit.tasks import models


@pytest.fixture
def nothing_present(tmp_path, monkeypatch):
    monkeypatch.setenv("CROPKIT_DATA", str(tmp_path / "no-data"))   # no dataset anywhere
    monkeypatch.setenv("CROPKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_dry_run_lists_and_prices_every_configuration_without_data(nothing_present, capsys):
    assert cli.main(["sweep", "--plan", "paper", "--dry-run"]) == 0
    out = capsys.readouterr().out
    frame = paper_grid.jobs("paper")
    for s in paper_grid.GRID:
        rows = frame[frame.setting == s.name]
        runs = sum(1 if m == "dense" else len(s.sparsities) for m in s.methods)  # dense: once per seed, at 0
        assert len(rows) == runs * 3, s.name  # the paper profile's three seeds
        pruned = rows[rows.method != "dense"]
        assert set(rows.method) == set(s.methods) and set(pruned.sparsity) == (set(s.sparsities) if len(pruned) else
                                                                               set())
        assert f"{s.name} — {s.source}: {s.data} / {s.model}" in out
        assert rows.epoch_s.iloc[0] == paper_grid.EPOCH_SECONDS[s.name]
    assert {s.source.split(",")[0] for s in paper_grid.GRID} >= {"Table 1", "Table 2", "Table 3", "Table 4"}
    assert {(s.data, s.model) for s in paper_grid.GRID} >= {
        ("cifar10", "resnet18"), ("cifar10", "vgg16"), ("cifar100", "vgg16"), ("tinyimagenet", "resnet18"),
        ("cifar10", "resnext101_32x48d"), ("cifar10", "resnext101_32x16d"), ("nyudepth", "fcrn"),
        ("ptb", "pointer_lstm"), ("cartpole", "policy"), ("acrobot", "policy"), ("lunarlander", "policy")}
    todo = frame[frame.status == "to run"]
    assert (todo.upper_h > 0).all() and (todo.estimate_h <= todo.upper_h + 1e-12).all()
    assert (frame[frame.status != "to run"].upper_h == 0).all()  # a run listed again by another setting
    assert f"{len(frame)} configurations, {len(todo)} to run" in out and "submitted 0 jobs" in out
    assert not (nothing_present / "no-data").exists()  # nothing was read, or downloaded


def test_epoch_seconds_given_price_every_setting(nothing_present, capsys):
    frame = paper_grid.dry_run("paper", seeds=[0], epoch_seconds=10.0, show=lambda *_: None)
    todo = frame[frame.status == "to run"]
    assert (todo.upper_h == todo.epochs * 10.0 / 3600).all()
    one = paper_grid.jobs("paper", seeds=[0], epoch_seconds={"ptb": 60.0})
    assert set(one[one.setting == "ptb"].epoch_s) == {60.0}
    assert set(one[one.setting == "vgg16-cifar10"].epoch_s) == {paper_grid.EPOCH_SECONDS["vgg16-cifar10"]}
    structured = one[(one.setting == "resnext-wide") & (one.status == "to run")].iloc[0]
    assert structured.estimate_h == pytest.approx(80 * (1 - 0.985) * paper_grid.EPOCH_SECONDS["resnext-wide"] / 3600)


def test_plan_needs_the_dry_run_and_positive_seconds(nothing_present, capsys):
    assert cli.main(["sweep", "--plan", "paper"]) == 2
    assert "--dry-run" in capsys.readouterr().err
    assert cli.main(["sweep", "--plan", "paper", "--dry-run", "--epoch-seconds", "0"]) == 2
    assert "must be a number of seconds > 0" in capsys.readouterr().err


@pytest.mark.parametrize("setting", paper_grid.GRID, ids=lambda s: s.name)
def test_each_settings_command_is_a_valid_sweep(setting):
    args = cli.parser().parse_args(shlex.split(paper_grid.command(setting, (0, 1, 2)))[1:])
    assert args.command == "sweep" and args.methods == list(setting.methods) and args.profile == "paper"
    assert (args.data, args.model, args.seeds) == (setting.data, setting.model, [0, 1, 2])
    assert args.sparsity == list(setting.sparsities)
    given = {**dict(args.options), **{k: getattr(args, k) for k in ("width", "epochs") if getattr(args, k)}}
    assert given == setting.options


def _forward_flops(name, shape, classes, width=1.0, tokens=False):
    with torch.device("meta"):  # shapes only: the 826 M-parameter ResNeXt costs nothing
        model = models.build(name, shape, classes, width=width)
        x = torch.zeros(1, *shape, dtype=torch.long) if tokens else torch.zeros(1, *shape)
        with FlopCounterMode(display=False) as counter:
            model(x)
    return counter.get_total_flops()


@pytest.mark.parametrize("setting, args", [
    ("resnet18-cifar10", ("resnet18", (3, 32, 32), 10)), ("vgg16-cifar100", ("vgg16", (3, 32, 32), 100)),
    ("resnet18-tinyimagenet", ("resnet18", (3, 64, 64), 200)), ("resnext-wide", ("resnext101_32x48d", (3, 32, 32), 10)),
    ("resnext-narrow", ("resnext101_32x16d", (3, 32, 32), 10)), ("nyudepth", ("fcrn", (3, 228, 304), 1)),
    ("ptb", ("pointer_lstm", (80,), 10_000, 2.34375, True))])
def test_the_flops_behind_the_assumed_epoch_seconds_recount(setting, args):
    assert _forward_flops(*args) == pytest.approx(paper_grid.FLOPS[setting], rel=1e-3)


def test_the_resnext_pair_is_priced_by_name(nothing_present, capsys):
    status = cli.main(["sweep", "crop-s", "--profile", "paper", "--model", "resnext101_32x48d", "--sparsity", "0.985",
                       "--seeds", "0", "--dry-run", "--epoch-seconds", "2792"])
    out = capsys.readouterr().out
    assert status == 0 and "crop-s" in out and "0.985" in out and "device-hours" in out


def test_the_claims_paper_variant_is_the_papers_resnext_pair():
    pair = claims.settings("paper").wide_pair
    assert pair == dict(method="crop-s", wide="resnext101_32x48d", sparsity=0.985, narrow="resnext101_32x16d")
    assert pair["wide"] in models.ZOO and pair["narrow"] in models.ZOO
    assert not hasattr(claims.settings("cpu"), "wide_pair")  # the offline claims keep their width sweep

    asked = []

    class Runs:  # hand-made results in place of the runs
        cfg = types.SimpleNamespace(wide_pair=pair)

        def get(self, method, sparsity, **options):
            asked.append((method, sparsity, options["model"]))
            wide = options["model"] == pair["wide"]
            return [types.SimpleNamespace(test_acc=0.925 if wide else 0.921,
                                          peak_memory_bytes=3.56e9 if wide else 3.89e9)] * 2

    text, passed = claims._wide_beats_narrow(Runs())
    assert passed and asked == [("crop-s", 0.985, "resnext101_32x48d"), ("dense", 0.0, "resnext101_32x16d")]
    assert "92.5 ± 0.0 %" in text and "3.56 GB" in text and "92.1 ± 0.0 %" in text and "3.89 GB" in text
    assert claims.SETTINGS["paper"]["wide_pair"] is not None
