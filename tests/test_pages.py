"""A lesson's HTML page reads the same offline: formulas as MathML, widgets in their last state, nothing fetched."""
from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import nbformat
import pytest
from browser import ARTIFACTS, CHROMIUM_ARGS, chromium, playwright
from PIL import Image
from tiny_lessons import tiny_lesson

from cropkit.lessons import notebook, pages

REMOTE_LOADS = re.compile(r"""<(script|link|iframe)\b[^>]*\b(src|href)=["']?(https?:)?//""", re.IGNORECASE)


def _png() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), (20, 120, 200)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _model(name: str, **state) -> dict:
    return {"model_name": f"{name}Model", "model_module": "@jupyter-widgets/controls", "state": state}


def test_formulas_become_mathml_and_unreadable_ones_stay_readable():
    assert pages.mathml(r"\frac{\partial L}{\partial \theta}").startswith("<math")
    assert 'display="block"' in pages.mathml(r"\Theta", display=True)
    assert pages.mathml("x^") == '<code class="tex">x^</code>', "a formula the converter cannot read is shown as TeX"


def test_widgets_are_drawn_in_their_last_state():
    models = {
        "box": _model("VBox", children=["IPY_MODEL_row", "IPY_MODEL_out", "IPY_MODEL_gone"]),
        "row": _model("HBox", children=["IPY_MODEL_pick", "IPY_MODEL_tau", "IPY_MODEL_bar"]),
        "pick": _model("Dropdown", description="criterion", _options_labels=["crop", "snip <x>"], index=1),
        "tau": _model("FloatSlider", description="tau", min=0.0, max=1.0, step=0.05, value=0.7),
        "bar": _model("FloatProgress", min=0.0, max=4.0, value=3.0),
        "out": _model("Output", outputs=[{"output_type": "stream", "name": "stdout", "text": "fired at 3\n"},
                                         {"output_type": "display_data", "data": {"image/png": _png()}}]),
        "gone": _model("HTML", value="hidden text", layout="IPY_MODEL_hidden"),
        "hidden": {"model_name": "LayoutModel", "state": {"visibility": "hidden"}},
    }
    drawn = pages.widget_html("box", models)
    assert '<option selected>snip &lt;x&gt;</option>' in drawn and "<select disabled>" in drawn
    assert 'type="range" disabled min="0.0" max="1.0" step="0.05" value="0.7"' in drawn and ">0.7<" in drawn
    assert '<progress max="4.0" value="3.0">' in drawn
    assert "<pre>fired at 3\n</pre>" in drawn and f"data:image/png;base64,{_png()}" in drawn
    assert "hidden text" not in drawn, "a widget its layout hides is not drawn"
    assert pages.widget_html("nowhere", models) == "", "nor one closed before the run ended (a finished tqdm bar)"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("", outputs=[
        nbformat.v4.new_output("display_data", {pages.WIDGET_VIEW: {"model_id": m}}) for m in ("box", "nowhere")])],
        metadata={"widgets": {pages.WIDGET_STATE: {"state": models}}})
    assert pages.static_widgets(nb) == 1 and len(nb.cells[0].outputs) == 1 and "widgets" not in nb.metadata


@pytest.fixture(scope="module")
def lesson_page(tmp_path_factory) -> Path:
    """A tiny lesson with a formula in its prose, a widget, and an output that links a CDN stylesheet, executed by
    the main job's `execute` and rendered by the main job's `render_html`."""
    folder = tmp_path_factory.mktemp("page")
    path = tiny_lesson(folder, "00_page",
                       "import ipywidgets as w\nfrom IPython.display import HTML, display\n"
                       "display(w.VBox([w.Dropdown(options=['crop', 'snip'], value='snip', description='criterion'),"
                       " w.FloatSlider(value=0.7, description='tau')]))",
                       "HTML('<link rel=\"stylesheet\" href=\"https://cdn.example.org/font-awesome.css\">"
                       "<i class=\"fa fa-play\"></i> play')")
    nb = nbformat.read(str(path), as_version=4)
    nb.cells.insert(1, nbformat.v4.new_markdown_cell(
        r"The gradient flow is $\mathrm{GF} = g_L(Y)^\top\,\Theta\,g_L(Y)$, and"
        "\n\n$$\\Delta_t = \\|\\theta_t - \\theta_0\\|^2 .$$"))
    nbformat.write(nb, str(path))
    out = folder / "out"
    notebook.execute(path, profile="smoke", output_dir=out, hang_cap_s=600)
    return notebook.render_html(out / "00_page.ipynb")


def test_the_page_loads_nothing_from_the_network(lesson_page):
    page = lesson_page.read_text()
    assert not REMOTE_LOADS.findall(page), REMOTE_LOADS.findall(page)
    assert "mathjax" not in page.lower() and "require.min.js" not in page and "html-manager" not in page
    assert page.count("<math") == 2 and "<select disabled" in page and pages.NOTE in page
    assert 'class="fa fa-play"' in page and ".fa-play:before" in page, "the icon is drawn by local CSS"


def test_the_page_shows_math_and_widgets_offline_in_chromium(lesson_page):
    """Chromium with every request that is not the page itself refused: nothing is asked for, the formulas are laid
    out as math (a fraction-free formula still has a width and height), the widget shows its last state."""
    sync_playwright, _ = playwright()
    asked = []
    shot = ARTIFACTS / "offline_lesson_page.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1000, "height": 900})

            def refuse(route):
                if route.request.url.startswith(("file:", "data:")):
                    return route.continue_()
                asked.append(route.request.url)
                return route.abort()

            context.route("**/*", refuse)
            page = context.new_page()
            page.goto(lesson_page.as_uri())
            boxes = [page.locator("math").nth(i).bounding_box() for i in range(page.locator("math").count())]
            assert len(boxes) == 2 and all(b and b["width"] > 20 and b["height"] > 8 for b in boxes), boxes
            assert page.locator("math[display=block]").count() == 1
            assert page.locator(".cropkit-widget select").input_value() == "snip"
            assert page.locator(".cropkit-widget input[type=range]").input_value() == "0.7"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert asked == [], f"the page asked the network for {asked}"
