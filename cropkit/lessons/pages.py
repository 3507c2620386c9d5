"""A lesson's executed notebook as one HTML page that reads the same offline.

    page = cropkit.lessons.pages.render_html("outputs/cpu/02_rich_to_lazy.ipynb")   # → outputs/cpu/02_rich_to_lazy.html

nbconvert's own page fetches MathJax, require.js and the widgets' JavaScript from CDNs: offline, formulas show as
raw LaTeX and widgets as nothing. This page fetches nothing:

* **math is MathML**, converted here with ``latex2mathml`` and drawn by the browser itself (Chromium 109+, Firefox,
  Safari): no script, a few kB per page. (Shipping MathJax would add about a megabyte to every page.) A formula the
  converter cannot read is shown as its LaTeX source;
* **widgets are drawn in their last state**, from the state nbclient saves in the executed notebook: sliders,
  dropdowns, progress bars, boxes, HTML and Output widgets (with the plots they hold) become plain, disabled HTML,
  with a note saying so. Without a kernel nothing could answer a moved slider, so a live widget library (a
  megabyte of JavaScript per page) would only pretend; JupyterLab runs them for real;
* a stylesheet an output links from a CDN (matplotlib's animation controls ask for Font Awesome) is dropped, and the
  few icons it drew are drawn with common glyphs (▶ ◀ |) by local CSS. Images are embedded, as nbconvert does.
"""
from __future__ import annotations

import copy
import html
import re
from pathlib import Path

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
NOTE = "widget shown as it was when the run ended; open the notebook in JupyterLab to use it"

STYLE = """
.cropkit-widget { border-left: 3px solid #c8d3e6; padding: 4px 8px; margin: 2px 0; }
.cropkit-widget .w-note { color: #777; font-size: 0.8em; font-style: italic; }
.w-box { display: flex; gap: 6px; align-items: center; flex-wrap: wrap; }
.w-vbox { display: flex; flex-direction: column; gap: 4px; }
.w-desc { color: #444; margin-right: 4px; }
.w-row { display: inline-flex; align-items: center; gap: 4px; }
.w-row progress { width: 14em; }
.w-readout { font-family: monospace; }
.fa { font-style: normal; } .fa-flip-horizontal { display: inline-block; transform: scaleX(-1); }
.fa-play:before { content: "\\25B6"; } .fa-pause:before { content: "||"; font-weight: bold; }
.fa-step-forward:before { content: "\\25B6|"; } .fa-step-backward:before { content: "|\\25C0"; }
.fa-fast-forward:before { content: "\\25B6\\25B6"; } .fa-fast-backward:before { content: "\\25C0\\25C0"; }
.fa-plus:before { content: "+"; } .fa-minus:before { content: "\\2212"; }
"""

TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}<style type="text/css">""" + STYLE + """</style>{%- endblock extra_css -%}
"""

REMOTE = re.compile(r"""<link\b[^>]*\bhref=["']?(?:https?:)?//[^>]*>|<script\b[^>]*\bsrc=["']?(?:https?:)?//[^>]*>\s*"""
                    r"""</script>""", re.IGNORECASE)


# ----------------------------------------------------------------------------- math

def mathml(tex: str, display: bool = False) -> str:
    """``tex`` as a MathML element (``display``: a block of its own), or its source in ``<code>`` if unreadable."""
    from latex2mathml.converter import convert

    try:
        return convert(tex.strip(), display="block" if display else "inline")
    except Exception:  # noqa: BLE001 (any parser error): the source, readable, is the fallback
        tag = "pre" if display else "code"
        return f'<{tag} class="tex">{html.escape(tex)}</{tag}>'


def _renderer_class():
    from nbconvert.filters.markdown_mistune import IPythonRenderer

    class MathMLRenderer(IPythonRenderer):
        """nbconvert's markdown renderer with formulas turned into MathML instead of left for MathJax."""

        def block_math(self, body: str) -> str:
            return mathml(body, display=True)

        def inline_math(self, body: str) -> str:
            return mathml(body)

        def latex_environment(self, name: str, body: str) -> str:
            return mathml(f"\\begin{{{name}}}{body}\\end{{{name}}}", display=True)

        def multiline_math(self, text: str) -> str:
            body = text.strip()
            for start, end in (("$$", "$$"), ("\\[", "\\]")):
                if body.startswith(start) and body.endswith(end):
                    return mathml(body[len(start):-len(end)], display=True)
            return mathml(body, display=True)

    return MathMLRenderer


# ----------------------------------------------------------------------------- widgets

def _ref(value) -> str | None:
    return value[len("IPY_MODEL_"):] if isinstance(value, str) and value.startswith("IPY_MODEL_") else None


def _hidden(state: dict, models: dict) -> bool:
    layout = models.get(_ref(state.get("layout")) or "", {}).get("state", {})
    return layout.get("display") == "none" or layout.get("visibility") == "hidden"


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))


def _output_html(output: dict) -> str:
    """One saved output (inside an Output widget) as HTML."""
    if output.get("output_type") == "stream":
        return f"<pre>{html.escape(''.join(output.get('text', '')))}</pre>"
    if output.get("output_type") == "error":
        text = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(output.get("traceback", [])))
        return f'<pre class="w-error">{html.escape(text)}</pre>'
    data = output.get("data", {})
    for kind in ("image/png", "image/jpeg"):
        if kind in data:
            return f'<img src="data:{kind};base64,{"".join(data[kind]).strip()}" alt="figure">'
    if "image/svg+xml" in data:
        return "".join(data["image/svg+xml"])
    if "text/html" in data:
        return "".join(data["text/html"])
    if WIDGET_VIEW in data:
        return "<span>[a nested widget]</span>"
    return f"<pre>{html.escape(''.join(data.get('text/plain', '')))}</pre>"


def widget_html(model_id: str, models: dict) -> str:
    """The saved widget ``model_id`` (and its children) as static HTML, in its last state."""
    model = models.get(model_id)
    if model is None or _hidden(model["state"], models):  # closed by the end of the run (a finished tqdm bar), hidden
        return ""
    name, state = model["model_name"].removesuffix("Model"), model["state"]
    desc = state.get("description") or ""
    label = f'<span class="w-desc">{html.escape(desc)}</span>' if desc else ""
    if "children" in state:
        inner = "".join(widget_html(_ref(c) or "", models) for c in state["children"])
        return f'<div class="{"w-box" if name.startswith("H") else "w-vbox"}">{inner}</div>'
    if name in ("HTML", "HTMLMath"):
        return f'<span class="w-row">{label}{state.get("value", "")}</span>'
    if name == "Label":
        return f'<span class="w-row">{html.escape(str(state.get("value", "")))}</span>'
    if name.endswith("Progress"):
        low, high, value = state.get("min", 0), state.get("max", 1), state.get("value", 0)
        return (f'<span class="w-row">{label}<progress max="{high - low}" value="{value - low}"></progress>'
                f"</span>")
    options = state.get("_options_labels")
    if name.endswith("Slider") and options is None:
        low, high, value = state.get("min", 0), state.get("max", 100), state.get("value", 0)
        bar = (f'<input type="range" disabled min="{low}" max="{high}" step="{state.get("step") or "any"}" '
               f'value="{value}">')
        return f'<span class="w-row">{label}{bar}<span class="w-readout">{_number(value)}</span></span>'
    if options is not None:
        index = state.get("index")
        chosen = options[index] if isinstance(index, int) and 0 <= index < len(options) else "–"
        if name.endswith("Slider"):
            bar = f'<input type="range" disabled min="0" max="{len(options) - 1}" value="{index or 0}">'
            return f'<span class="w-row">{label}{bar}<span class="w-readout">{html.escape(str(chosen))}</span></span>'
        items = "".join(f"<option{' selected' if i == index else ''}>{html.escape(str(o))}</option>"
                        for i, o in enumerate(options))
        return f'<span class="w-row">{label}<select disabled>{items}</select></span>'
    if name in ("Checkbox", "ToggleButton"):
        checked = " checked" if state.get("value") else ""
        return f'<span class="w-row"><input type="checkbox" disabled{checked}>{label}</span>'
    if name == "Button":
        return f'<button disabled>{html.escape(desc or "button")}</button>'
    if name == "Output":
        return f'<div class="w-vbox">{"".join(_output_html(o) for o in state.get("outputs", []))}</div>'
    if "value" in state and not isinstance(state["value"], (dict, list)):
        return f'<span class="w-row">{label}<input disabled value="{html.escape(str(state["value"]))}"></span>'
    return f'<span class="w-row">[{html.escape(name)} {html.escape(desc)}]</span>'


def static_widgets(nb) -> int:
    """Replace every widget view among ``nb``'s outputs by its static HTML, or drop it when its widget was closed or
    hidden by the end of the run (in place), and drop the saved widget state, which would make nbconvert load the
    widget library; returns how many views were drawn."""
    models = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    replaced = 0
    for cell in nb.cells:
        kept = []
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view is not None:
                drawn = widget_html(view.get("model_id", ""), models)
                if not drawn:  # nothing left to show, as in JupyterLab
                    continue
                output["data"] = {"text/html": f'<div class="cropkit-widget">{drawn}<div class="w-note">{NOTE}'
                                               "</div></div>"}
                replaced += 1
            kept.append(output)
        if "outputs" in cell:
            cell.outputs = kept
    nb.metadata.pop("widgets", None)
    return replaced


# ----------------------------------------------------------------------------- the page

def exporter():
    """nbconvert's lab-style HTML exporter without its CDN scripts, formulas as MathML."""
    import jinja2
    from nbconvert import HTMLExporter
    from nbconvert.filters.markdown_mistune import MarkdownWithMath

    renderer = _renderer_class()

    class OfflineHTMLExporter(HTMLExporter):
        @jinja2.pass_context
        def markdown2html(self, context, source):
            cell = context.get("cell", {})
            path = context.get("resources", {}).get("metadata", {}).get("path", "")
            page = renderer(escape=False, attachments=cell.get("attachments", {}), embed_images=self.embed_images,
                            path=path, anchor_link_text=self.anchor_link_text,
                            exclude_anchor_links=self.exclude_anchor_links, **self.lexer_options)
            return MarkdownWithMath(renderer=page).render(source)

    return OfflineHTMLExporter(extra_loaders=[jinja2.DictLoader({"cropkit_offline.html.j2": TEMPLATE})],
                               template_file="cropkit_offline.html.j2")


def page(nb, title: str) -> str:
    """The HTML of executed notebook ``nb`` (left unchanged), needing no network."""
    nb = copy.deepcopy(nb)
    static_widgets(nb)
    for cell in nb.cells:  # a LaTeX output (IPython.display.Math) as MathML
        for output in cell.get("outputs", []):
            latex = output.get("data", {}).get("text/latex")
            if latex and "text/html" not in output["data"]:
                tex = "".join(latex).strip().strip("$")
                output["data"] = {"text/html": mathml(tex, display=True)}
    body, _ = exporter().from_notebook_node(nb, resources={"metadata": {"name": title}})
    return REMOTE.sub("", body)


def render_html(ipynb: str | Path) -> Path:
    """Write the page of an executed notebook to ``<same name>.html`` beside it and return that path."""
    import nbformat

    ipynb = Path(ipynb)
    target = ipynb.with_suffix(".html")
    target.write_text(page(nbformat.read(str(ipynb), as_version=4), ipynb.stem), encoding="utf-8")
    return target
