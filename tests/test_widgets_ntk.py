"""The NTK lessons' views work without a browser, and widget callbacks never swallow an exception."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from cropkit.core import scores
from cropkit.lessons.widgets_ntk import NTKExplorer, detector_figure, rich_to_lazy_animation, tau_slider  # noqa: E402
from cropkit.tasks import models
from cropkit.training import timing  # noqa: E402


def test_explorer_draws_and_caches_kernels():
    model = models.build("mlp", (1, 10), 3, width=0.1, seed=0)
    x, y = torch.randn(4, 1, 10), torch.tensor([0, 1, 2, 0])
    explorer = NTKExplorer(model, {c: scores.get(c)(model, [(x, y)]) for c in ("crop", "random")}, x[:2],
                           [0.5, 0.9], classes=3)
    fig = explorer.figure("crop", 0.9)
    assert "kernel distance" in fig._suptitle.get_text()
    assert explorer.kernel("crop", 0.9) is explorer.kernel("crop", 0.9)
    with pytest.raises(ValueError, match="unknown criterion"):
        explorer.kernel("snap", 0.5)
    box = explorer.widget()
    assert box.children[0].children[0].options == ("crop", "random")
    plt.close("all")


def test_callback_errors_are_shown_not_swallowed(monkeypatch):
    """The NTK views follow the kit's one widget policy (`cropkit.lessons.widgets.safe_observe`): recorded, shown,
    raised."""
    from cropkit.lessons import widgets, widgets_ntk

    box = tau_slider([4, 8, 9, 9.25, 9.5])
    slider, output = box.children

    def broken(*args, **kwargs):
        raise RuntimeError("boom in a callback")

    monkeypatch.setattr(widgets_ntk, "detector_figure", broken)
    before = len(widgets.ERRORS)
    with pytest.raises(RuntimeError, match="boom in a callback"):
        slider.value = 0.2
    recorded = widgets.ERRORS[before:]
    del widgets.ERRORS[before:]  # the module's record is shared; leave it as it was
    assert [str(e) for e in recorded] == ["boom in a callback"]
    shown = [o for o in output.outputs if o.get("output_type") == "error"]
    assert shown and shown[-1]["ename"] == "RuntimeError" and "boom in a callback" in shown[-1]["evalue"]
    plt.close("all")


def test_tau_views_and_animation(tmp_path):
    history = [4, 8, 9, 9.25, 9.5]  # fires at epoch 4 with τ = 0.1 (tests/test_timing.py)
    ax = detector_figure(history, 0.1).axes[0]
    assert "fires at epoch 4" in ax.get_title()
    assert tau_slider(history).children[0].value == 0.1
    steps = [v * s / 3 for v in history for s in (1, 2, 3)]  # 3 steps per epoch, epoch ends at Δ_t
    animation = rich_to_lazy_animation(steps, 3, 0.1, drift_steps=[0, 6, 12], drift=[0, 0.1, 0.12], frames=5)
    path = tmp_path / "a.gif"
    animation.save(path, writer=matplotlib.animation.PillowWriter(fps=5))
    assert path.stat().st_size > 0 and timing.detection_epoch(history, 0.1) == 4
    plt.close("all")
