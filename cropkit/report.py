"""One self-contained HTML page that gathers what every executed lesson produced.

    path = cropkit.report.write_summary("outputs/cpu", {"00_tour": results_00, "03_lottery_vs_earlycrop": ...})

The main job (``python -m cropkit.notebook``) calls :func:`write_summary` after running the notebooks; rebuild
it from the JSON files of an earlier run with ``python -m cropkit.report outputs/cpu``. For each notebook stem
the page shows

* its key scalars (top-level numbers and strings of its JSON, nested dicts flattened as ``a.b``),
* its tables: every list of row dicts in the JSON (long ones cut to :data:`MAX_ROWS` rows),
* its figures: ``<stem>*.png`` and ``<stem>*.gif`` from the output folder, embedded as base64,
* links to the executed notebook ``<stem>.ipynb`` and its HTML rendering ``<stem>.html`` next to the page.

A lesson that failed (``{"_error": "…"}`` in the summary) is listed at the top with its error, and its section
links whatever the failed run left behind.

Everything (styles, images) is inside the one file, so it can be mailed or opened from any folder.
"""
from __future__ import annotations

import base64
import datetime
import html
import json
import math
import sys
from pathlib import Path

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
.note { color: #777; font-size: 0.85em; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #666; font-size: 0.85em; }
nav ul { columns: 2; }
.failed { background: #fff1f0; border: 1px solid #e0a0a0; padding: 0.6em 1em; }
.failed pre { white-space: pre-wrap; margin: 0.3em 0; }
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


def _link(path: Path, what: str) -> str:
    name = html.escape(path.name)
    return f'<a href="{name}">{what} {name}</a>' if path.exists() else f"{what} {name} (not found)"


def _section(output_dir: Path, stem: str, results: dict) -> str:
    parts = [f'<h2 id="{html.escape(stem)}">{html.escape(stem)}</h2>']
    seconds = results.get("_seconds")
    ran = f" · ran in {seconds:,.0f} s" if isinstance(seconds, (int, float)) else ""
    links = [_link(output_dir / f"{stem}.html", "lesson as HTML"),
             _link(output_dir / f"{stem}.ipynb", "executed notebook")]
    data = output_dir / f"{stem}.json"
    if data.exists() and "_error" not in results:
        links.append(_link(data, "results"))
    parts.append(f'<p class="meta">{" · ".join(links)}{ran}</p>')
    if "_error" in results:
        parts.append(f'<div class="failed"><b>failed</b><pre>{html.escape(str(results["_error"]))}</pre></div>')
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
    return "\n".join(parts)


def _failures(summary: dict) -> str:
    failed = {stem: r["_error"] for stem, r in summary.items() if isinstance(r, dict) and "_error" in r}
    if not failed:
        return ""
    items = "".join(f'<li><a href="#{html.escape(s)}">{html.escape(s)}</a>: <code>{html.escape(str(e))}</code></li>'
                    for s, e in failed.items())
    return f'<div class="failed"><b>{len(failed)} of {len(summary)} lessons failed</b><ul>{items}</ul></div>'


def render(output_dir: str | Path, summary: dict[str, dict], profile: str | None = None) -> str:
    """The HTML page as a string (see :func:`write_summary`)."""
    from .measure import hardware

    output_dir = Path(output_dir)
    profile = profile or _first(summary, "profile", "unknown")
    machine = _first(summary, "hardware", hardware())
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    seconds = [r["_seconds"] for r in summary.values() if isinstance(r, dict) and r.get("_seconds") is not None]
    total = f" · {sum(seconds):,.0f} s in all" if seconds else ""
    nav = "".join(f'<li><a href="#{html.escape(s)}">{html.escape(s)}</a></li>' for s in summary)
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
<p class="note">Each section gathers one lesson's figures, the tables and key numbers of its JSON results, and a
link to its executed notebook and its HTML rendering (in this folder). Timings are wall-clock on the hardware above.</p>
<nav><ul>{nav}</ul></nav>
{sections}
</body></html>
"""


def write_summary(output_dir: str | Path, summary: dict[str, dict], profile: str | None = None) -> Path:
    """Write ``output_dir/summary.html`` from ``{notebook stem: the JSON it wrote, or {"_error": …}}`` and return its
    path (``profile``: the header's, when no lesson's JSON names it)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "summary.html"
    path.write_text(render(output_dir, summary, profile), encoding="utf-8")
    return path


def load_summary(output_dir: str | Path) -> dict[str, dict]:
    """``{stem: results}`` from the ``NN_*.json`` files an earlier run left in ``output_dir``."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(Path(output_dir).glob("[0-9][0-9]_*.json"))}


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/cpu")
    found = load_summary(folder)
    if not found:
        sys.exit(f"no NN_*.json results in {folder}")
    print(write_summary(folder, found))
