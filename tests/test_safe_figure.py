"""PNG bytes of a figure: the opaque shortcut draws the same pixels as matplotlib's own PNG."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from PIL import Image

from rmsops.render import plots, safe_figure


def _figure():
    times = pd.date_range("2026-12-03 08:00", periods=30, freq="1min", tz="UTC")
    frame = pd.DataFrame({"timestamp": times, "value": np.linspace(0, 90, 30), "label": "rms-backend"})
    return plots.timeseries(frame, "CPU utilisation", "%", lines={"critical": 80})


def _pixels(png: bytes) -> tuple[str, np.ndarray]:
    image = Image.open(io.BytesIO(png))
    return image.mode, np.asarray(image.convert("RGBA"))


def test_an_opaque_figure_is_an_rgb_png_with_the_pixels_matplotlib_draws():
    mode, ours = _pixels(plots.png(_figure()))
    drawn = _figure()
    safe_figure.png(drawn)  # the same texts made safe; then matplotlib's own PNG of it
    _, theirs = _pixels(safe_figure._png_as_drawn(drawn, 100))
    assert mode == "RGB"
    assert ours.shape == theirs.shape == (340, 900, 4)
    assert (ours == theirs).all()


def test_a_transparent_figure_keeps_its_alpha():
    fig = _figure()
    fig.patch.set_alpha(0.0)
    for ax in fig.axes:
        ax.patch.set_alpha(0.0)
    mode, pixels = _pixels(plots.png(fig))
    assert mode == "RGBA"
    assert pixels[0, 0, 3] == 0  # the corner shows what is behind the image, not black


def test_pixels_of_an_unexpected_size_are_left_to_matplotlib():
    assert safe_figure._opaque_png(b"\xff" * 4 * 10, 3, 3) is None
    assert safe_figure._opaque_png(b"", 0, 0) is None
    assert Image.open(io.BytesIO(safe_figure._opaque_png(b"\xff" * 4 * 9, 3, 3))).mode == "RGB"
