"""The licence pyproject.toml declares is the one shipped, and CITATION.cff cites the paper the kit reproduces."""
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_license_file_is_the_declared_mit_licence():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]["text"]
    assert declared == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "THE SOFTWARE IS PROVIDED \"AS IS\"" in text


def test_citation_cites_the_paper_and_the_kit():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0" and cff["title"].startswith("cropkit") and cff["license"] == "MIT"
    paper = cff["preferred-citation"]
    assert paper["title"] == "Winning the Lottery Ahead of Time: Efficient Early Network Pruning"
    assert [a["family-names"] for a in paper["authors"]] == ["Rachwan", "Zügner", "Charpentier", "Geisler", "Ayle",
                                                            "Günnemann"]
    assert (paper["year"], paper["volume"], paper["start"], paper["end"]) == (2022, 162, 18293, 18309)
    assert "ICML 2022" in paper["collection-title"] and paper["publisher"]["name"] == "PMLR"
