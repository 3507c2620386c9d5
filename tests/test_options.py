"""Each run option is declared once (`cropkit.methods.options.Option`); validation, the CLI's help and the cache key
follow."""
import os

import pytest
import torch

import cropkit as ck
from cropkit import cli
from cropkit.experiments import grid, profiles, results, runs
from cropkit.methods import options
from cropkit.methods import registry as methods

ALL = runs.options()
COMMON = {o.name for o in options.COMMON}


def _other_value(option: options.Option, value, method: str):
    """A valid value other than ``value``, read off the declaration (a criterion must fit the method's kind)."""
    if option.kind is bool:
        return not value
    if option.choices:
        return next(c for c in option.choices if c != value)
    if option.kind is int:
        return 3 if value is None else value + 1
    if option.kind is float:
        return 0.05 if not value else value * 2  # 0 doubled is 0
    criterion = "l1_nodes" if method.endswith("-s") else "magnitude"
    return {"schedule": "constant", "criterion": criterion}.get(option.name, f"{value}-other")


def _key(method: str, **given) -> str:
    epochs = given.pop("epochs", None)
    cfg = runs.settings(method, profile="smoke", epochs=epochs, **given)
    return results.config_key(runs._config(method, cfg, 0.9, 0, torch.device("cpu")))


@pytest.mark.parametrize("method", ck.METHODS)
def test_every_option_a_method_reads_enters_its_key_and_no_other(method):
    base_cfg = runs.settings(method, profile="smoke")
    base = _key(method)
    reads = COMMON | set(methods.REGISTRY[method].settings)
    for name, option in ALL.items():
        changed = _key(method, **{name: _other_value(option, getattr(base_cfg, name), method)})
        assert (changed != base) == (name in reads), (method, name)


def test_every_option_is_declared_once_and_profile_defaults_come_from_every_profile():
    from_profile = {n for n, o in ALL.items() if o.default is options.PROFILE}
    for profile, table in profiles.RUN.items():
        assert set(table) - {"data", "model", "width", "seeds"} == from_profile, profile
    for m in methods.REGISTRY.values():  # a shared option is the same declaration, not a copy
        assert all(ALL[o.name] is o for o in m.options)
    with pytest.raises(ValueError, match="declared twice"):
        options.declared([(options.Option("lr", int, "not the same"),)])


@pytest.mark.parametrize("name, bad, words", [
    ("batch_size", 0, "batch_size must be an integer >= 1"),
    ("ticks", True, "ticks must be an integer >= 1"),
    ("dense_epochs", -1, "dense_epochs must be an integer >= 0"),
    ("limit", 0, "limit must be an integer >= 1 .* or None"),
    ("detect_every_steps", 0, "detect_every_steps must be an integer >= 1"),
    ("reinit", 1, "True or False"),
    ("rule", "median", "unknown rule 'median'"),
    ("lr", "fast", "lr must be a number"),
])
def test_validation_comes_from_the_declaration(name, bad, words):
    with pytest.raises(ValueError, match=words):
        runs.settings("dense", profile="smoke", **{name: bad})


def test_declared_defaults_are_valid_and_the_cli_lists_every_option():
    for profile in profiles.PROFILES:
        cfg = runs.settings("dense", profile=profile)
        for option in ALL.values():
            option.check(getattr(cfg, option.name))
    text = cli.parser()._subparsers._group_actions[0].choices["run"].format_help()
    assert all(f"  {name} (" in text for name in ALL if name != "epochs")


def test_the_torch_threads_of_a_cpu_run_are_in_its_key_and_its_row(tmp_path, monkeypatch):
    """Threads change a CPU run's last digits: a run with 1 and one with 2 threads are two cache entries."""
    from cropkit.experiments import grid

    threads = torch.get_num_threads()
    kw = dict(profile="smoke", cache_dir=tmp_path, progress=False)
    one = ck.run("dense", threads=1, **kw)
    two = ck.run("dense", threads=2, **kw)
    assert one.key != two.key and (one.threads, two.threads) == (1, 2) and one.config["threads"] == 1
    assert one.row()["threads"] == 1 and one.cpus == len(os.sched_getaffinity(0))
    assert torch.get_num_threads() == threads  # given for the run, put back after it
    again = ck.run("dense", threads=1, **kw)
    assert again.from_cache and again.key == one.key
    torch.set_num_threads(2)
    try:  # threads=None: the process's, as torch has them
        assert ck.run("dense", **kw).key == two.key and grid.plan(["dense"], seeds=[0], **kw)[0].cached
        assert runs.replay("dense", **kw).key == two.key
    finally:
        torch.set_num_threads(threads)
    assert runs.replay("dense", threads=1, **kw).key == one.key and runs.replay("dense", threads=3, **kw) is None
    assert grid.plan(["dense"], seeds=[0], threads=1, **kw)[0].cached
    assert not grid.plan(["dense"], seeds=[0], threads=3, **kw)[0].cached
    monkeypatch.setattr(runs.hardware, "device_name", lambda device: "a GPU")
    cfg = runs.settings("dense", profile="smoke")
    assert "threads" not in runs._config("dense", cfg, 0.0, 0, torch.device("cuda"))  # a GPU run's do not count
    with pytest.raises(ValueError, match="threads must be an integer >= 1"):
        ck.run("dense", threads=0, **kw)


def test_compare_in_worker_processes_replays_from_the_cache_without_starting_workers(tmp_path, monkeypatch):
    """The workers' runs are keyed with their threads; the parent looks their results up with the same count."""
    kw = dict(profile="smoke", seeds=(0, 1), cache_dir=tmp_path, progress=False, aggregate=False, workers=2)
    first = ck.compare(["dense"], **kw)
    assert set(first["threads"]) == {max(1, len(os.sched_getaffinity(0)) // 2)}

    def no_workers(*args, **kwargs):
        raise AssertionError("a cached compare started worker processes")

    monkeypatch.setattr(grid, "_in_processes", no_workers)
    second = ck.compare(["dense"], **kw)
    assert second.to_json() == first.to_json()
