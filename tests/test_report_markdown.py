"""The report's one renderer: blocks in, Markdown out."""

import os

import pytest

from keras_fmnist.report_markdown import Bullets
from keras_fmnist.report_markdown import Figure
from keras_fmnist.report_markdown import Image
from keras_fmnist.report_markdown import Section
from keras_fmnist.report_markdown import Table
from keras_fmnist.report_markdown import Text
from keras_fmnist.report_markdown import render

pytestmark = pytest.mark.backend_independent


def test_render_lays_out_every_block_kind(tmp_path):
    drawn = []

    def draw(path):
        drawn.append(path)
        open(path, "w").close()

    figure = os.path.join(tmp_path, "figures", "f.png")
    os.makedirs(os.path.dirname(figure))
    sections = [Section("1. One", (
        Table(("a", "b", "c"), (("1", 2, None),)),
        Bullets(("x", "y")),
        Image("run", os.path.join(tmp_path, "run", "curves.png")),
        Figure("fig", figure, draw)))]
    text = render("Title", [Text("Intro.")], sections, str(tmp_path))
    assert text == ("# Title\n\nIntro.\n\n## 1. One\n\n| a | b | c |\n|---|---|---|\n"
                    "| 1 | 2 | None |\n\n- x\n- y\n\n![run](run/curves.png)\n\n"
                    "![fig](figures/f.png)\n")
    assert drawn == [figure]


def test_a_row_must_fill_its_table():
    with pytest.raises(ValueError, match="a row of 2 cells under 3 columns"):
        Table(("a", "b", "c"), (("1", "2"),))


def test_an_unknown_block_is_refused(tmp_path):
    with pytest.raises(TypeError, match="not a report block"):
        render("T", [], [Section("s", ("plain string",))], str(tmp_path))
