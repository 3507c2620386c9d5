"""Each run option is declared once (`cropkit.options.Option`); validation, the CLI's help and the cache key follow."""
import pytest
import torch

import cropkit as ck
from cropkit import methods, options, profiles, results, runs

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
        return 0.05 if value is None else value * 2
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
    text = ck.cli.parser()._subparsers._group_actions[0].choices["run"].format_help()
    assert all(f"  {name} (" in text for name in ALL if name != "epochs")
