"""The claims table: every claim gets the kit's number and a verdict by a margin read against the seeds' spread;
equal budgets; the runs behind it with their epochs, losses, detector and layouts; provenance; the deviations."""
import pytest

import cropkit as ck
from cropkit.experiments import grid
from cropkit.experiments import runs as run_lib
from cropkit.experiments import verdicts as V
from cropkit.methods.registry import REGISTRY

VERDICTS = {"reproduced", "not reproduced", "undecided"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("claims-cache")


@pytest.fixture(scope="module")
def table(cache, one_thread):
    return ck.claims.check("smoke", progress=False, cache_dir=cache)


def test_one_row_per_claim_with_a_verdict(table):
    assert list(table.claim) == [c.statement for c in ck.claims.CLAIMS]
    assert set(table.verdict) <= VERDICTS
    assert all(table.kit.str.contains("%")) and all(table.paper.str.len() > 10)
    saves = table.kit.iloc[4]
    assert "timed interleaved" in saves and saves.count("×") >= 4


def test_ranking_claims_name_their_rank_among_the_right_field(table):
    structured, unstructured = table.kit.iloc[1], table.kit.iloc[2]
    assert "of 8" in structured and "of 6" in unstructured


def test_markdown_lists_setting_and_deviations(table):
    text = ck.claims.markdown(table)
    assert text.count("\n| ") >= len(ck.claims.CLAIMS) + 4
    deviations = {d["deviation"]: d["changes"] for d in table.attrs["deviations"]}
    grasp = next(v for k, v in deviations.items() if k.startswith("GraSP"))
    assert "(100.0%)" in grasp  # inverting GraSP keeps exactly what GraSP removes
    assert "Provenance: torch threads [1]" in text and "cropkit " in text
    runs = table.attrs["runs"][ck.claims.Environment(1)]
    assert {"train_loss_end", "epochs", "cuts", "detector", "layout"} <= set(runs[0])
    structured = [r for r in runs if r["layout"]]
    assert structured and all(r["method"].split()[0] in {REGISTRY[m].label for m in ck.claims.STRUCTURED}
                              for r in structured)
    assert any("layer_floor=0.1" in r["method"] for r in runs)  # the floored EarlyCroP-S beside the claims
    floor = table.attrs["floor"]  # claim 1's test on it, a line of its own, not a row of the claims
    assert floor["verdict"] in VERDICTS and "claim 1's test with EarlyCroP-S keeping at least 10%" in text
    assert "EarlyCroP-S layer_floor=0.1 @90%: " in floor["found"][(1, "native")][0] \
        and f"**{floor['verdict']}**" in text
    strict = next(v for k, v in deviations.items() if "k − 1" in k)
    assert strict.startswith("1 of")  # continuous scores: no ties, so exactly the k-th weight is dropped


def test_a_margin_within_the_seeds_spread_is_undecided():
    assert V.margin_verdict(0.03, 0.02) == "reproduced" and V.margin_verdict(-0.03, 0.02) == "not reproduced"
    assert V.margin_verdict(0.01, 0.02) == V.margin_verdict(-0.01, 0.02) == "undecided"
    assert V.seed_spread([0.5, 0.7], [0.9, 0.9]) == pytest.approx(0.1414, abs=1e-3) and V.seed_spread([0.5]) == 0
    assert V.combine(["reproduced", "reproduced"]) == "reproduced"
    assert V.combine(["reproduced", "undecided"]) == "undecided"
    assert V.combine(["undecided", "not reproduced"]) == "not reproduced"
    assert V.across(["reproduced", "reproduced"]) == "reproduced" and V.across(["reproduced", "not reproduced"]) == \
        "undecided"


def test_a_verdict_that_changes_between_thread_counts_is_undecided(monkeypatch, tmp_path):
    claims = [ck.claims.Claim("a", "a", "p", "t", lambda runs: ("1 %", "reproduced")),
              ck.claims.Claim("b", "b", "p", "t", lambda runs: ("1 %", "reproduced" if runs.cfg.threads == 1
                                                                else "not reproduced"))]
    monkeypatch.setattr(ck.claims.deviations, "reference_deviations", lambda cfg: [])
    monkeypatch.setattr(ck.claims, "_floor_needs", lambda cfg: [])
    table = ck.claims.check("smoke", claims=claims, progress=False, cache_dir=tmp_path, threads=(1, 2))
    assert list(table.verdict) == ["reproduced", "undecided"]
    assert list(table["verdict (2 torch threads)"]) == ["reproduced", "not reproduced"]


def _capabilities():
    return {grid.capability(), grid.call_with_kernels("avx2", grid.capability)}


@pytest.fixture(scope="module")
def avx2_apart():
    """AVX2 kernels this CPU runs and that are not its native ones (an AVX512 CPU; else the tests below skip)."""
    try:
        found = _capabilities()
    except ValueError as err:  # a CPU without AVX2
        pytest.skip(str(err))
    if len(found) < 2:
        pytest.skip(f"this CPU's native kernels are {grid.capability()}: AVX2 would repeat them")
    return found


def test_a_verdict_that_changes_between_kernels_is_undecided(monkeypatch, tmp_path, avx2_apart):
    """``kernels=("native", "avx2")``: the claims run twice; a claim that measures (no runs to read, like claim 5's
    timing) is computed in a process whose torch uses those kernels; the AVX2 runs are cached in a folder of their own
    under the same keys."""
    claims = [ck.claims.Claim("a", "a", "p", "t", lambda runs: ("1 %", "reproduced"),
                              lambda cfg: [("random-s", cfg.sparsity, {})]),
              ck.claims.Claim("b", "b", "p", "t", _reports_its_kernels)]
    monkeypatch.setattr(ck.claims.deviations, "reference_deviations", lambda cfg: [])
    monkeypatch.setattr(ck.claims, "_floor_needs", lambda cfg: [])
    table = ck.claims.check("smoke", claims=claims, progress=False, cache_dir=tmp_path, kernels=("native", "avx2"))
    assert list(table.verdict) == ["reproduced", "undecided"]
    assert list(table["verdict (1 torch thread, AVX2 kernels)"]) == ["reproduced", "not reproduced"]
    assert table.kit[1] == grid.capability() and table.attrs["provenance"]["kernel_sets"] == ["native", "avx2"]
    native = sorted(p.name for p in tmp_path.glob("*.json"))
    assert native and sorted(p.name for p in (tmp_path / "kernels-avx2").glob("*.json")) == native
    text = ck.claims.markdown(table)
    assert "(AVX512 kernels; also AVX2)" in text or "; also AVX2)" in text
    assert "The runs behind the claims (1 torch thread per run, AVX2 kernels;" in text


def _reports_its_kernels(runs):
    """A claim that measures: it reports the kernels of the process it runs in."""
    found = grid.capability()
    return found, "not reproduced" if found == "AVX2" else "reproduced"


def test_kernels_are_checked_before_any_run(tmp_path):
    with pytest.raises(ValueError, match="unknown kernels 'avx3'; choose one of"):
        ck.claims.check("smoke", cache_dir=tmp_path, kernels=("native", "avx3"))
    with pytest.raises(ValueError, match="repeat"):
        ck.claims.check("smoke", cache_dir=tmp_path, kernels=("avx2", "avx2"))
    jobs = grid.plan(["dense"], seeds=[0], profile="smoke", cache_dir=tmp_path, data="digits", model="cnn", epochs=1)
    with pytest.raises(ValueError, match="need fresh worker processes: executor='processes'"):
        grid.execute(jobs, "here", kernels="avx2")
    assert not list(tmp_path.rglob("*.json"))


def test_runs_with_avx2_kernels_run_with_them(tmp_path, avx2_apart):
    """The worker processes' torch uses AVX2; the result is cached under the kernels' folder, replayed from there."""
    cfg = ck.claims.settings("smoke")
    runs = ck.claims.Runs(cfg, progress=False, cache_dir=tmp_path, kernels="avx2")
    (result,) = runs.get("random-s", cfg.sparsity)[:1]
    assert runs.cache_dir == tmp_path / "kernels-avx2" and len(list(runs.cache_dir.glob("*.json"))) == len(cfg.seeds)
    assert not list(tmp_path.glob("*.json"))
    again = ck.claims.Runs(cfg, progress=False, cache_dir=tmp_path, kernels="avx2").get("random-s", cfg.sparsity)
    assert again[0].test_acc == result.test_acc and len(list(runs.cache_dir.glob("*.json"))) == len(cfg.seeds)


def test_every_method_gets_the_same_total_budget_and_the_threads_are_in_the_keys(tmp_path):
    """The cpu setting plans every run with total_epochs (LTR: each of its R + 1 trainings) and one torch thread,
    in its cache key; the deciding methods over five seeds."""
    cfg = ck.claims.settings("cpu")
    runs = ck.claims.Runs(cfg, progress=False, cache_dir=tmp_path)
    needs = [n for claim in ck.claims.CLAIMS for n in claim.needs(cfg)]
    for method, sparsity, options in needs:
        jobs = grid.plan([method], [sparsity], runs.seeds(method), profile="cpu", cache_dir=tmp_path,
                         threads=cfg.threads, **{**runs.run_options(), **options})
        rounds = cfg.run_options["ltr_rounds"] + 1 if method == "ltr" else 1
        assert {job.epochs for job in jobs} == {rounds * cfg.total_epochs}, method
        assert all(job.kwargs["threads"] == 1 for job in jobs)
        assert len(jobs) == (5 if method in ck.claims.DECIDING else 3)
    # the rivals whose spread decides claims 2-4 run five seeds too, and the floored EarlyCroP-S both high sparsities
    assert {"gatedecorators", "cropit-u", "ltr"} <= set(ck.claims.DECIDING)
    assert [p for _, p, _ in ck.claims._floor_needs(cfg)] == cfg.high_sparsities == [0.95, 0.98]
    _, config = run_lib.configuration("crop-s", profile="cpu", threads=1, sparsity=0.95, **runs.run_options())
    assert config["threads"] == 1 and config["total_epochs"] == 40  # the key holds the threads and the budget


def test_runs_at_once_fit_the_cpus(monkeypatch, capsys):
    """Two 2-thread runs on 2 CPUs would contend for cores: the setting's workers are cut to fit (and it says so); a
    count the user chose is kept, with a warning; one-thread runs and GPU runs (threads None) keep the setting's."""
    monkeypatch.setattr(ck.claims, "run_cpus", lambda: 2)
    assert ck.claims.fit_workers(2, 1) == 2 and ck.claims.fit_workers(2, None) == 2
    assert ck.claims.fit_workers(2, 2) == 1 and "1 run at once" in capsys.readouterr().out
    assert ck.claims.fit_workers(3, 4) == 1
    with pytest.warns(UserWarning, match="exceed the 2 CPUs"):
        assert ck.claims.fit_workers(2, 2, explicit=True) == 2
    monkeypatch.setattr(ck.claims, "run_cpus", lambda: 16)
    assert ck.claims.fit_workers(2, 2) == 2


def test_duplicate_seeds_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="repeat"):
        ck.claims.check("smoke", seeds=[0, 0], cache_dir=tmp_path)


def test_command_writes_the_table_from_cached_runs(table, cache, tmp_path, capsys):
    from cropkit import cli

    out = tmp_path / "claims.md"
    assert cli.main(["claims", "--profile", "smoke", "--cache-dir", str(cache), "--out", str(out), "--quiet"]) == 0
    timed = "Structured pruning saves"  # timed afresh on every call; every other number comes from the cached runs

    def replayed(text):
        return [line for line in text.splitlines() if timed not in line]
    assert replayed(out.read_text()) == replayed(ck.claims.markdown(table))


def test_command_rejects_an_unwritable_output_before_running(tmp_path, capsys):
    from cropkit import cli

    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli.main(["claims", "--profile", "smoke", "--out", str(blocker / "claims.md")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cropkit: error: cannot write") and "Traceback" not in err


def test_against_dense_follows_its_rule_in_both_directions():
    """Lesson 05's verdict rule (verdicts.against_dense) on hand-made means ± stds, for a metric where lower is better
    (RMSE) and one where higher is better (return)."""
    at_init = ("crop-u", "snip")
    lower = {("dense-long", 0.0): (0.50, 0.01), ("earlycrop-u", 0.5): (0.505, 0.01), ("crop-u", 0.5): (0.60, 0.0),
             ("snip", 0.5): (0.55, 0.0), ("earlycrop-u", 0.9): (0.70, 0.01), ("crop-u", 0.9): (0.80, 0.0),
             ("snip", 0.9): (0.75, 0.0)}
    v = V.against_dense(lower, [0.5, 0.9], higher_is_better=False, at_init=at_init, floor=("constant", 1.0))
    first, second = v["per_sparsity"]
    assert first["close_to_dense"] and not second["close_to_dense"]  # 0.005 worse within √2·0.01; 0.2 is not
    assert first["best_at_init"] == "snip" and first["ahead_of_at_init"] and second["ahead_of_at_init"]
    assert v["verdict"] == "mixed" and v["close_to_dense_up_to"] == 0.5
    assert v["spread_over_learned"] == pytest.approx(0.01 * 2 ** 0.5 / 0.5)
    # the same numbers as returns (higher is better): EarlyCroP-U is now behind SNIP and CroP-U everywhere
    higher = V.against_dense(lower, [0.5, 0.9], higher_is_better=True, at_init=at_init)
    assert [r["best_at_init"] for r in higher["per_sparsity"]] == ["crop-u", "crop-u"]
    assert higher["verdict"] == "not reproduced" and "spread_over_learned" not in higher
    only_low = V.against_dense(lower, [0.5], higher_is_better=False, at_init=at_init)
    assert only_low["verdict"] == "reproduced"
    assert V.against_dense(lower, [0.5], higher_is_better=False, at_init=at_init,
                                floor=("constant", 0.505))["verdict"].startswith("undecided")


def test_the_readme_table_is_the_commands_output():
    """README's claims table is `claims.markdown` as `./kit claims` wrote it: the claims in order with their paper
    numbers and tests word for word, a verdict each, the setting and the provenance line."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## The paper's claims, checked", 1)[1].split("\n## ", 1)[0]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| ") and line.split("|")[1].strip() in {c.statement for c in ck.claims.CLAIMS}]
    assert [r[0] for r in rows] == [c.statement for c in ck.claims.CLAIMS]
    assert [(r[1], r[3]) for r in rows] == [(c.paper, c.test) for c in ck.claims.CLAIMS]
    assert all(r[4].strip("*") in VERDICTS for r in rows)
    assert "Provenance: torch threads" in section and "Setting: " in section


@pytest.mark.slow
def test_five_seed_check_reads_the_claims_runs(tmp_path, one_thread, capsys):
    """benchmarks/claims_deciding.py: every row deciding claims 1–4 over the setting's deciding seeds, verdicts by the
    claims' rule; its runs are the claims' runs (same cache keys: the claims replay them without training)."""
    from benchmarks import claims_deciding

    found = claims_deciding.main(["--profile", "smoke", "--threads", "1", "--cache-dir", str(tmp_path)])
    one = found[ck.claims.Environment(1)]
    assert [v for _, v in one] and {v for _, v in one} <= VERDICTS and len(one) == 5
    out = capsys.readouterr().out
    assert "GateDecorators" in out and "layer_floor=0.1" in out and "claim 4 LTR" in out
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    cfg = ck.claims.settings("smoke")
    replayed = ck.claims.Runs(cfg, progress=False, cache_dir=tmp_path).get("gatedecorators", cfg.sparsity)
    assert len(replayed) == len(cfg.deciding_seeds) and sorted(p for p in tmp_path.rglob("*") if p.is_file()) == files


@pytest.mark.slow
def test_the_kernel_experiment_changes_only_the_kernels(capsys):
    """benchmarks/cpu_kernels.py: the same run in two processes, the second restricted to AVX2 kernels; same data."""
    from benchmarks import cpu_kernels

    found = cpu_kernels.main(["--profile", "smoke", "--method", "crop-s", "--sparsity", "0.9", "--seed", "0"])
    ours, avx2 = found.values()
    assert avx2["capability"] in {"AVX2", "DEFAULT"} and ours["data"] == avx2["data"]
    assert len(ours["loss"]) == len(avx2["loss"]) == ck.claims.settings("smoke").total_epochs
    assert "same data: True" in capsys.readouterr().out
