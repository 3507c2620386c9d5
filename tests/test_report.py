"""The summary page: one self-contained HTML file with every lesson's tables, figures and key numbers."""
import base64
import json
import re

import pytest
from PIL import Image

from cropkit.lessons import report


def _fake_run(folder):
    """What the main job leaves behind for two lessons: JSON, an executed notebook, a PNG and a GIF."""
    Image.new("RGB", (8, 6), (200, 30, 30)).save(folder / "00_tour_learning_curve.png")
    Image.new("RGB", (8, 6), (30, 30, 200)).save(folder / "02_rich_to_lazy_drift.gif")
    Image.new("RGB", (8, 6), (30, 200, 30)).save(folder / "02_run.png")  # named by the lesson number only
    (folder / "00_tour.ipynb").write_text("{}")
    (folder / "02_rich_to_lazy.json").write_text("{}")
    return {
        "00_tour": {"profile": "smoke", "hardware": "CPU test · 2 threads", "final_test_acc": 0.91234,
                    "params": 12345, "history": [{"epoch": 1, "test_acc": 0.5}, {"epoch": 2, "test_acc": 0.9}],
                    "_seconds": 3.2},
        "02_rich_to_lazy": {"profile": "smoke", "detector": {"tau": 0.1, "fired_at": 3},
                            "table": [{"method": "<b>ltr</b>", "test_acc": 0.8, "weight_sparsity": 0.9}]},
    }


def test_summary_gathers_every_lesson(tmp_path):
    summary = _fake_run(tmp_path)
    path = report.write_summary(tmp_path, summary)
    page = path.read_text()
    assert path == tmp_path / "summary.html" and page.startswith("<!DOCTYPE html>")
    for stem in summary:
        assert f'id="{stem}"' in page
    # profile, hardware and a date in the header
    assert "3 s in all" in page and "results 00_tour.json" not in page
    assert "smoke" in page and "CPU test · 2 threads" in page and re.search(r"\d{4}-\d{2}-\d{2}", page)
    # both images embedded, byte for byte
    for name, kind in (("00_tour_learning_curve.png", "png"), ("02_rich_to_lazy_drift.gif", "gif"),
                       ("02_run.png", "png")):
        data = base64.b64encode((tmp_path / name).read_bytes()).decode()
        assert f"data:image/{kind};base64,{data}" in page
    # tables render, with values escaped and formatted; scalars and nested scalars listed
    assert page.count('<table class="data') >= 4
    assert "<th class=\"text\">test_acc</th>" in page and "&lt;b&gt;ltr&lt;/b&gt;" in page
    assert "detector.fired_at" in page and "0.9123" in page and "12,345" in page
    # the executed notebook is linked when it exists, and its absence is said
    assert '<a href="02_rich_to_lazy.json">' in page and '<a href="00_tour.ipynb">' in page
    assert "02_rich_to_lazy.ipynb (not found)" in page
    assert "src=\"http" not in page and "<link" not in page, "the page must be self-contained"


def test_figures_belong_to_their_lesson_number(tmp_path):
    for name in ("01_identity.png", "01_gradient_flow_and_ntk_x.png", "010_other.png", "02_run.png"):
        Image.new("RGB", (2, 2)).save(tmp_path / name)
    names = [p.name for p in report.figures(tmp_path, "01_gradient_flow_and_ntk")]
    assert names == ["01_gradient_flow_and_ntk_x.png", "01_identity.png"]


def test_long_tables_are_cut_and_rebuild_from_json(tmp_path):
    rows = [{"i": i} for i in range(report.MAX_ROWS + 5)]
    (tmp_path / "03_x.json").write_text(json.dumps({"profile": "cpu", "rows": rows}))
    summary = report.load_summary(tmp_path)
    assert list(summary) == ["03_x"]
    page = report.write_summary(tmp_path, summary).read_text()
    assert f"first {report.MAX_ROWS} of {len(rows)} rows" in page
    shown = page.split("<h3>rows</h3>")[1].split("</table>")[0]
    assert shown.count("<tr>") == report.MAX_ROWS + 1  # header + the rows shown


def test_failed_lessons_are_listed_with_their_error(tmp_path):
    (tmp_path / "01_x.html").write_text("<html></html>")
    summary = {"00_tour": {"profile": "smoke", "final_test_acc": 0.9},
               "01_x": {"_error": "RuntimeError: <boom>", "_seconds": 4.0}}
    page = report.write_summary(tmp_path, summary, profile="smoke").read_text()
    assert "1 of 2 lessons failed" in page and "RuntimeError: &lt;boom&gt;" in page
    assert '<a href="01_x.html">lesson as HTML 01_x.html</a>' in page and "00_tour.html (not found)" in page
    assert page.count('class="failed"') == 2  # the list at the top and the lesson's own section


def test_the_page_leads_with_one_overview_table(tmp_path):
    """One row per lesson: status, time, headline and verdicts, from the well-known keys or the fallbacks; the
    detailed sections follow, collapsed."""
    summary = {
        "00_tour": {"final_test_acc": 0.5678, "_seconds": 12.0},  # no headline: its final_* number
        "01_said": {"headline": "CroP keeps the NTK <closest>", "verdicts": {"GF preserved": "holds",
                    "domain": {"verdict": "undecided: too few seeds", "per_sparsity": []}},
                    "_over_budget": "took 700 s, budget 600 s", "_seconds": 700.0,
                    "_watchdog": {"restarts": 1, "late_messages": 2, "lost": ["watchdog: cell 3 (`x`): lost"]}},
        "02_rows": {"ltr_vs_earlycrop": [{"target_sparsity": 0.5, "verdict": "LTR ahead"},
                                         {"target_sparsity": 0.9, "verdict": "EarlyCroP-U ahead"}]},
        "03_broken": {"_error": "RuntimeError: boom", "_seconds": 1.0},
        "04_stopped": {"_interrupted": "stopped by Ctrl+C after 5 s", "_seconds": 5.0},
    }
    page = report.write_summary(tmp_path, summary, profile="smoke").read_text()
    table = page.split('<table class="overview">')[1].split("</table>")[0]
    assert page.index('<table class="overview">') < page.index("<details")
    rows = table.split("<tr>")[2:]
    assert [re.search(r'href="#([^"]+)"', r).group(1) for r in rows] == list(summary)
    assert "final_test_acc 0.5678" in rows[0] and '<span class="status ok">ok</span>' in rows[0] and "12 s" in rows[0]
    assert "CroP keeps the NTK &lt;closest&gt;" in rows[1] and "<b>GF preserved</b>: holds" in rows[1]
    assert "<b>domain</b>: undecided: too few seeds" in rows[1]
    assert 'over budget</span>' in rows[1] and 'restarted</span>' in rows[1]
    assert "<b>ltr_vs_earlycrop</b>: LTR ahead (0.5); EarlyCroP-U ahead (0.9)" in rows[2]
    assert '<span class="status failed">failed</span>' in rows[3] and "RuntimeError: boom" in rows[3]
    assert '<span class="status interrupted">interrupted</span>' in rows[4]
    assert page.count('<details class="lesson"') == len(summary) and "<details class=\"lesson\" open" not in page
    assert "the watchdog restarted this lesson: watchdog: cell 3" in page and "2 kernel message(s) came late" in page
    kept = json.loads((tmp_path / "summary.json").read_text())
    assert kept["01_said"]["_watchdog"]["restarts"] == 1 and kept["03_broken"]["_error"] == "RuntimeError: boom"


def test_rebuilding_from_files_keeps_the_bookkeeping(tmp_path):
    (tmp_path / "00_tour.json").write_text(json.dumps({"profile": "cpu", "final_test_acc": 0.9}))
    report.write_summary(tmp_path, {"00_tour": {"profile": "cpu", "final_test_acc": 0.9, "_seconds": 42.0,
                                                "_over_budget": "took 700 s"},
                                    "01_x": {"_error": "RuntimeError: boom"}})
    summary = report.load_summary(tmp_path)
    assert summary["00_tour"]["_seconds"] == 42.0 and summary["00_tour"]["_over_budget"]
    assert summary["01_x"] == {"_error": "RuntimeError: boom"}


def test_a_failed_write_leaves_the_earlier_page_whole(tmp_path, monkeypatch):
    page = tmp_path / "summary.html"
    page.write_text("an earlier run")

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report.os, "fsync", fail)  # the write fails on its way to disk
    with pytest.raises(OSError, match="No space left"):
        report.write_summary(tmp_path, {"00_tour": {"final_test_acc": 0.9}})
    assert page.read_text() == "an earlier run" and sorted(p.name for p in tmp_path.iterdir()) == ["summary.html"]
    monkeypatch.undo()
    written = report.write_summary(tmp_path, {"00_tour": {"final_test_acc": 0.9}})
    (tmp_path / "plain").write_text("x")
    assert written.stat().st_mode == (tmp_path / "plain").stat().st_mode, "readable as any file the job writes"
