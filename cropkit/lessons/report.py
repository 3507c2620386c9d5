"""One self-contained HTML page that gathers what every executed lesson produced.

    path = cropkit.lessons.report.write_summary("outputs/cpu", {"00_tour": results_00, "03_lottery_vs_earlycrop": ...})

The main job calls :func:`write_summary`; ``python -m cropkit.lessons.report outputs/cpu`` rebuilds the page. It leads
with one overview table, a row per lesson: status (ok, failed, interrupted, over budget, restarted), time, headline and
verdicts. A lesson says the last two in well-known keys of its JSON, ``headline`` (one sentence) and ``verdicts``
(``{claim: verdict}``, a verdict may be a dict with a ``"verdict"`` key); without them the row shows its ``final_*``
number and the ``verdict`` column of its tables. Below, a collapsed section per lesson holds its key scalars (nested
dicts flattened as ``a.b``), its tables (every list of row dicts, cut to :data:`MAX_ROWS` rows), its figures
(``NN_*.png``, ``NN_*.gif``, embedded) and links to ``<stem>.ipynb`` and ``<stem>.html``; a failed lesson is also
listed at the top with its error.

The page is one file (mail it, open it from any folder); it and ``summary.json`` (the summary with ``_seconds``,
``_over_budget``, ``_watchdog``, …) are written atomically: a full disk leaves an earlier page whole.
"""
from __future__ import annotations

import base64
import datetime
import html
import json
import math
import os
import sys
import tempfile
from pathlib import Path

from cropkit.core.hardware import describe as hardware

MAX_ROWS = 60  # rows shown per table; the JSON keeps them all
MAX_LIST = 12  # a list of scalars longer than this is summarised instead of printed

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #1d1d1f; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
h3 { margin-bottom: 0.3em; color: #444; }
.meta { color: #555; } .meta td { padding: 0 1.2em 0 0; }
table.data { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; display: block; overflow-x: auto; }
table.data th, table.data td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; white-space: nowrap; }
table.data th { background: #f3f3f6; position: sticky; top: 0; }
table.data td.text, table.data th.text { text-align: left; }
table.kv td { white-space: normal; text-align: left; max-width: 760px; overflow-wrap: anywhere; }
table.data tr:nth-child(even) td { background: #fafafa; }
.note { color: #777; font-size: 0.85em; } figcaption { color: #666; font-size: 0.85em; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
.failed { background: #fff1f0; border: 1px solid #e0a0a0; padding: 0.6em 1em; }
.failed pre { white-space: pre-wrap; margin: 0.3em 0; }
table.overview { border-collapse: collapse; margin: 1em 0; width: 100%; font-size: 0.92em; }
table.overview th, table.overview td { border-bottom: 1px solid #ddd; padding: 5px 8px; text-align: left; }
table.overview th { background: #f3f3f6; } table.overview td { vertical-align: top; } td.time { white-space: nowrap; }
table.overview ul { margin: 0; padding-left: 1.1em; } .status.ok { background: #e3f4e4; }
.status { border-radius: 3px; padding: 0 6px; margin-right: 2px; font-size: 0.85em; white-space: nowrap; }
.status.failed, .status.interrupted { background: #fbdcdc; } .status.warn { background: #fff1cc; }
details.lesson { border-top: 2px solid #ddd; margin-top: 1.2em; }
details.lesson > summary { cursor: pointer; font-size: 1.25em; font-weight: 600; padding: 0.4em 0; }
"""


# ----------------------------------------------------------------------------- values → text

def _is_scalar(value) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _fmt(value) -> str:
    """Numbers with 4 significant digits (integers in full), None as '–'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:,.4g}" if abs(value) >= 1 else f"{value:.4f}".rstrip("0").rstrip(".")
    if isinstance(value, (list, tuple)):
        if all(_is_scalar(v) for v in value) and len(value) <= MAX_LIST:
            return "[" + ", ".join(_fmt(v) for v in value) + "]"
        return f"[{len(value)} values]"
    if isinstance(value, dict):
        text = json.dumps(value, default=str)
        return text if len(text) <= 80 else text[:77] + "…"
    return str(value)


def _cell(value, tag: str = "td") -> str:
    cls = ' class="text"' if isinstance(value, str) else ""
    return f"<{tag}{cls}>{html.escape(_fmt(value))}</{tag}>"


# ----------------------------------------------------------------------------- JSON → scalars and tables

def _is_rows(value) -> bool:
    return isinstance(value, list) and len(value) > 0 and all(isinstance(v, dict) for v in value)


def scalars(results: dict, prefix: str = "") -> dict:
    """Top-level scalars and short scalar lists, nested dicts flattened as ``outer.inner``; keys starting with
    ``_`` (bookkeeping such as ``_seconds``) are left to the caller."""
    found = {}
    for key, value in results.items():
        name = f"{prefix}{key}"
        if key.startswith("_"):
            continue
        if _is_scalar(value):
            found[name] = value
        elif isinstance(value, list) and all(_is_scalar(v) for v in value) and len(value) <= MAX_LIST:
            found[name] = value
        elif isinstance(value, dict):
            found.update(scalars(value, prefix=f"{name}."))
    return found


def tables(results: dict, prefix: str = "") -> dict[str, list[dict]]:
    """Every list of row dicts in the JSON, by its (dotted) key; keys naming a table come first."""
    found = {}
    for key, value in results.items():
        name = f"{prefix}{key}"
        if _is_rows(value):
            found[name] = value
        elif isinstance(value, dict):
            found.update(tables(value, prefix=f"{name}."))
    return dict(sorted(found.items(), key=lambda item: "table" not in item[0].lower()))


def html_table(rows: list[dict], max_rows: int = MAX_ROWS) -> str:
    """A list of row dicts as an HTML table; columns are the union of the rows' keys in first-seen order."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    head = "".join(f'<th class="text">{html.escape(str(c))}</th>' for c in columns)
    body = "\n".join("<tr>" + "".join(_cell(row.get(c)) for c in columns) + "</tr>" for row in rows[:max_rows])
    note = (f'<p class="note">first {max_rows} of {len(rows)} rows; the JSON holds them all</p>'
            if len(rows) > max_rows else "")
    return f'<table class="data"><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>{note}'


def _key_values(values: dict) -> str:
    rows = "\n".join(f'<tr><th class="text">{html.escape(k)}</th>{_cell(v)}</tr>' for k, v in values.items())
    return f'<table class="data kv"><tbody>\n{rows}\n</tbody></table>'


# ----------------------------------------------------------------------------- figures

def figures(output_dir: str | Path, stem: str) -> list[Path]:
    """The lesson's figures: ``NN_*.png`` then ``NN_*.gif`` in ``output_dir`` (NN = the stem's number, so
    ``01_identity.png`` belongs to ``01_gradient_flow_and_ntk``), each sorted by name."""
    output_dir = Path(output_dir)
    prefix = stem.split("_", 1)[0] + "_" if stem[:2].isdigit() else stem
    return sorted(output_dir.glob(f"{prefix}*.png")) + sorted(output_dir.glob(f"{prefix}*.gif"))


def embed_image(path: Path) -> str:
    kind = "gif" if path.suffix.lower() == ".gif" else "png"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    caption = path.stem.replace("_", " ")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/{kind};base64,{data}">'
            f"<figcaption>{html.escape(path.name)}</figcaption></figure>")


# ----------------------------------------------------------------------------- the page

def _first(summary: dict, key: str, default: str) -> str:
    values = [r.get(key) for r in summary.values() if isinstance(r, dict) and r.get(key)]
    return str(values[0]) if values else default


def _seconds(results: dict) -> str:
    return f"{results['_seconds']:,.0f} s" if isinstance(results.get("_seconds"), (int, float)) else "–"


def _link(path: Path, what: str) -> str:
    name = html.escape(path.name)
    return f'<a href="{name}">{what} {name}</a>' if path.exists() else f"{what} {name} (not found)"


# ----------------------------------------------------------------------------- the overview

def status(results: dict) -> list[tuple[str, str]]:
    """The lesson's status badges: ``[(text, css class)]``, e.g. ``[("ok", "ok"), ("over budget", "warn")]``."""
    state = "interrupted" if "_interrupted" in results else "failed" if "_error" in results else "ok"
    restarts = (results.get("_watchdog") or {}).get("restarts", 0)
    badges = [(state, state)] + ([("over budget", "warn")] if results.get("_over_budget") else [])
    return badges + ([(f"restarted ×{restarts}" if restarts > 1 else "restarted", "warn")] if restarts else [])


def headline(results: dict) -> str:
    """The lesson's ``headline``, else its first ``final_*`` number (``final_test_acc 0.91``), else ''."""
    if isinstance(results.get("headline"), str):
        return results["headline"]
    final = next((k for k, v in results.items() if k.startswith("final_") and _is_scalar(v)), None)
    return f"{final} {_fmt(results[final])}" if final else ""


def verdicts(results: dict) -> dict[str, str]:
    """``{claim: verdict}``: the lesson's ``verdicts``, else the ``verdict`` column of each table of its JSON
    (``{table: "LTR ahead (0.5); EarlyCroP-U ahead (0.9)"}``, rows labelled by their sparsity)."""
    given = results.get("verdicts")
    if isinstance(given, dict) and given:
        return {str(k): str(v.get("verdict", _fmt(v)) if isinstance(v, dict) else v) for k, v in given.items()}
    def at(row):  # the row's sparsity, if it names one
        where = next((row[k] for k in ("target_sparsity", "sparsity") if k in row), None)
        return f" ({_fmt(where)})" if where is not None else ""

    return {name: "; ".join(f"{row['verdict']}{at(row)}" for row in rows if "verdict" in row)
            for name, rows in tables(results).items() if any("verdict" in row for row in rows)}


def overview(summary: dict) -> str:
    """One row per lesson: lesson, status, time, headline, verdicts."""
    rows = []
    for stem, results in summary.items():
        badges = "".join(f'<span class="status {c}">{html.escape(t)}</span>' for t, c in status(results))
        said = verdicts(results)
        items = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in said.items())
        line = headline(results) or results.get("_error") or results.get("_interrupted") or "–"
        rows.append(f'<tr><td><a href="#{html.escape(stem)}">{html.escape(stem)}</a></td><td>{badges}</td>'
                    f'<td class="time">{_seconds(results)}</td><td>{html.escape(str(line))}</td>'
                    f'<td>{f"<ul>{items}</ul>" if items else "–"}</td></tr>')
    head = "<tr><th>lesson</th><th>status</th><th>time</th><th>headline</th><th>verdicts</th></tr>"
    return f'<table class="overview"><thead>{head}</thead><tbody>\n' + "\n".join(rows) + "\n</tbody></table>"


# ----------------------------------------------------------------------------- one lesson's section

def _section(output_dir: Path, stem: str, results: dict) -> str:
    badges = " ".join(t for t, _ in status(results))
    parts = [f'<details class="lesson" id="{html.escape(stem)}"><summary>{html.escape(stem)} '
             f'<span class="note">{html.escape(badges)}</span></summary>']
    ran = f" · ran in {_seconds(results)}" if isinstance(results.get("_seconds"), (int, float)) else ""
    links = [_link(output_dir / f"{stem}.html", "lesson as HTML"),
             _link(output_dir / f"{stem}.ipynb", "executed notebook")]
    data = output_dir / f"{stem}.json"
    if data.exists() and "_error" not in results:
        links.append(_link(data, "results"))
    parts.append(f'<p class="meta">{" · ".join(links)}{ran}</p>')
    watch = results.get("_watchdog") or {}
    parts += [f'<p class="note">the watchdog restarted this lesson: {html.escape(str(why))}</p>'
              for why in watch.get("lost", [])]
    if watch.get("late_messages"):
        parts.append(f'<p class="note">{watch["late_messages"]} kernel message(s) came late (found by a short poll, '
                     "not by the wakeup that should have announced them)</p>")
    if "_error" in results or "_interrupted" in results:
        what, text = ("failed", results["_error"]) if "_error" in results else ("interrupted", results["_interrupted"])
        parts.append(f'<div class="failed"><b>{what}</b><pre>{html.escape(str(text))}</pre></div></details>')
        return "\n".join(parts)
    if results.get("_over_budget"):
        parts.append(f'<p class="note">over its time budget: {html.escape(str(results["_over_budget"]))}</p>')
    for path in figures(output_dir, stem):
        parts.append(embed_image(path))
    for name, rows in tables(results).items():
        parts.append(f"<h3>{html.escape(name)}</h3>" + html_table(rows))
    values = scalars(results)
    if values:
        parts.append("<h3>key results</h3>" + _key_values(values))
    parts.append("</details>")
    return "\n".join(parts)


def _failures(summary: dict) -> str:
    failed = {stem: r["_error"] for stem, r in summary.items() if isinstance(r, dict) and "_error" in r}
    if not failed:
        return ""
    items = "".join(f'<li><a href="#{html.escape(s)}">{html.escape(s)}</a>: <code>{html.escape(str(e))}</code></li>'
                    for s, e in failed.items())
    return f'<div class="failed"><b>{len(failed)} of {len(summary)} lessons failed</b><ul>{items}</ul></div>'


# ----------------------------------------------------------------------------- the page

def render(output_dir: str | Path, summary: dict[str, dict], profile: str | None = None) -> str:
    """The HTML page as a string (see :func:`write_summary`)."""

    output_dir = Path(output_dir)
    profile = profile or _first(summary, "profile", "unknown")
    machine = _first(summary, "hardware", hardware())
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    seconds = [r["_seconds"] for r in summary.values() if isinstance(r, dict) and r.get("_seconds") is not None]
    total = f" · {sum(seconds):,.0f} s in all" if seconds else ""
    sections = "\n".join(_section(output_dir, stem, results) for stem, results in summary.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>cropkit summary · {html.escape(profile)}</title>
<style>{STYLE}</style></head><body>
<h1>cropkit · reproduction summary</h1>
<table class="meta"><tr><td>profile</td><td><b>{html.escape(profile)}</b></td></tr>
<tr><td>hardware</td><td>{html.escape(machine)}</td></tr>
<tr><td>date</td><td>{html.escape(date)}</td></tr>
<tr><td>notebooks</td><td>{len(summary)}{total}</td></tr></table>
{_failures(summary)}
{overview(summary)}
<p class="note">Below, one section per lesson (click to open) gathers its figures, the tables and key numbers of its
JSON results, and links to its executed notebook and its HTML rendering (in this folder). Timings are wall-clock on
the hardware above.</p>
{sections}
<script>
function openTarget() {{ var d = document.getElementById(decodeURIComponent(location.hash.slice(1)));
  if (d && d.tagName === "DETAILS") d.open = true; }}
addEventListener("hashchange", openTarget); openTarget();
</script>
</body></html>
"""


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path``, flush it to disk, rename it over ``path``: an error on
    the way (a full disk) raises and leaves an earlier ``path`` whole."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0o022)
    try:
        os.umask(umask)
        os.fchmod(handle, 0o666 & ~umask)  # as an ordinary write would (mkstemp makes it private)
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_summary(output_dir: str | Path, summary: dict[str, dict], profile: str | None = None) -> Path:
    """Write ``output_dir/summary.html`` and ``summary.json`` atomically from ``{notebook stem: the JSON it wrote, or
    {"_error": …}}``; return the page (``profile``: the header's, when no lesson's JSON names it)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(output_dir / "summary.json", json.dumps(summary, indent=1, default=str))
    return write_atomic(output_dir / "summary.html", render(output_dir, summary, profile))


def load_summary(output_dir: str | Path) -> dict[str, dict]:
    """``{stem: results}`` from the ``NN_*.json`` files an earlier run left in ``output_dir``, with the bookkeeping
    (``_seconds``, ``_watchdog``, failures, …) of its ``summary.json`` where there is one."""
    output_dir = Path(output_dir)
    found = {p.stem: json.loads(p.read_text()) for p in sorted(output_dir.glob("[0-9][0-9]_*.json"))}
    kept = output_dir / "summary.json"
    if kept.exists():
        for stem, results in json.loads(kept.read_text()).items():
            extra = {k: v for k, v in results.items() if k.startswith("_")}
            found[stem] = {**found[stem], **extra} if stem in found and "_error" not in extra else results
    return dict(sorted(found.items()))


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/cpu")
    found = load_summary(folder)
    if not found:
        sys.exit(f"no NN_*.json results in {folder}")
    print(write_summary(folder, found))
