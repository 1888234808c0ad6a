"""SVG bytes of a figure: well-formed, texts drawn as escaped text, the same bytes every time."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd

from rmsops.render import plots

SVG = "{http://www.w3.org/2000/svg}"


def _figure(title: str = "CPU utilisation"):
    times = pd.date_range("2026-12-03 08:00", periods=30, freq="1min", tz="UTC")
    frame = pd.DataFrame({"timestamp": times, "value": np.linspace(0, 90, 30), "label": "rms-backend"})
    return plots.timeseries(frame, title, "%", lines={"critical": 80})


def test_a_figure_is_an_svg_whose_texts_are_text():
    root = ET.fromstring(plots.svg(_figure()))
    assert root.tag == f"{SVG}svg" and root.get("width") == "648pt" and root.get("height") == "244.8pt"
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    assert "CPU utilisation" in texts and "time (UTC)" in texts and "critical (80)" in texts
    assert "rms-backend" in texts and "08:10" in texts, texts  # legend entry and a date tick, made at draw time


def test_hostile_text_is_escaped_into_the_xml_and_nothing_runs():
    svg = plots.svg(_figure('</text><script>alert(1)</script><text x="0">')).decode()
    root = ET.fromstring(svg)  # still well-formed
    assert not list(root.iter(f"{SVG}script")) and "<script" not in svg
    assert '&lt;/text&gt;&lt;script&gt;alert(1)&lt;/script&gt;' in svg
    assert '</text><script>alert(1)</script><text x="0">' in ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def test_the_same_figure_gives_the_same_bytes_without_a_date():
    first, second = plots.svg(_figure()), plots.svg(_figure())
    assert first == second  # clip paths' ids from a fixed salt; no drawing date
    assert b"<dc:date>" not in first and b"Matplotlib v" not in first
