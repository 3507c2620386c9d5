"""The claims table: every claim gets the kit's number and a verdict; the deviations are measured."""
import pytest

import cropkit as ck

VERDICTS = {"reproduced", "not reproduced", "not testable offline"}


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
    strict = next(v for k, v in deviations.items() if "k − 1" in k)
    assert strict.startswith("1 of")  # continuous scores: no ties, so exactly the k-th weight is dropped


def test_verdict_follows_the_stated_rule(monkeypatch, tmp_path):
    """A claim whose test passes reads 'reproduced', one that fails 'not reproduced', None 'not testable'."""
    claims = [ck.claims.Claim(n, n, "p", "t", lambda runs, r=r: ("1 %", r)) for n, r in
              (("a", True), ("b", False), ("c", None))]
    monkeypatch.setattr(ck.claims, "reference_deviations", lambda cfg: [])
    table = ck.claims.check("smoke", claims=claims, progress=False, cache_dir=tmp_path)
    assert list(table.verdict) == ["reproduced", "not reproduced", "not testable offline"]


def test_duplicate_seeds_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="distinct"):
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
    """Lesson 05's verdict rule (ck.claims.against_dense) on hand-made means ± stds, for a metric where lower is better
    (RMSE) and one where higher is better (return)."""
    at_init = ("crop-u", "snip")
    lower = {("dense-long", 0.0): (0.50, 0.01), ("earlycrop-u", 0.5): (0.505, 0.01), ("crop-u", 0.5): (0.60, 0.0),
             ("snip", 0.5): (0.55, 0.0), ("earlycrop-u", 0.9): (0.70, 0.01), ("crop-u", 0.9): (0.80, 0.0),
             ("snip", 0.9): (0.75, 0.0)}
    v = ck.claims.against_dense(lower, [0.5, 0.9], higher_is_better=False, at_init=at_init, floor=("constant", 1.0))
    first, second = v["per_sparsity"]
    assert first["close_to_dense"] and not second["close_to_dense"]  # 0.005 worse within √2·0.01; 0.2 is not
    assert first["best_at_init"] == "snip" and first["ahead_of_at_init"] and second["ahead_of_at_init"]
    assert v["verdict"] == "mixed" and v["close_to_dense_up_to"] == 0.5
    assert v["spread_over_learned"] == pytest.approx(0.01 * 2 ** 0.5 / 0.5)
    # the same numbers as returns (higher is better): EarlyCroP-U is now behind SNIP and CroP-U everywhere
    higher = ck.claims.against_dense(lower, [0.5, 0.9], higher_is_better=True, at_init=at_init)
    assert [r["best_at_init"] for r in higher["per_sparsity"]] == ["crop-u", "crop-u"]
    assert higher["verdict"] == "not reproduced" and "spread_over_learned" not in higher
    only_low = ck.claims.against_dense(lower, [0.5], higher_is_better=False, at_init=at_init)
    assert only_low["verdict"] == "reproduced"
    assert ck.claims.against_dense(lower, [0.5], higher_is_better=False, at_init=at_init,
                                floor=("constant", 0.505))["verdict"].startswith("undecided")
