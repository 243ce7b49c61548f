"""Untrusted text made plain for a terminal, a spreadsheet cell and a plot label."""

from __future__ import annotations

import pytest

from rvqgan.untrusted import for_plot, for_spreadsheet, for_terminal

HOSTILE = [
    ("\x1b]0;owned window title\x07name", "name"),  # OSC ended by BEL
    ("\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\", "link"),  # OSC 8 hyperlink ended by ST
    ("\x1b[2J\x1b[1;1Hclear", "clear"),  # CSI: clear the screen, move the cursor
    ("\x1b[31mred\x1b[0m", "red"),
    ("\x9b31mC1 CSI", "C1 CSI"),
    ("\x1bcreset", "reset"),  # a two-character ESC sequence
    ("\x1bPq#0;2;0;0;0\x1b\\sixel", "sixel"),  # DCS string
    ("a\rb\nc\td", "a b c d"),  # line breaks cannot fake a second line
    ("bell\x07 nul\x00 del\x7f", "bell nul del"),
    ("right\u202eto left\u2066", "rightto left"),  # bidirectional overrides reorder what is shown
    ("dangling \x1b", "dangling "),
    ("dangling CSI \x1b[12", "dangling CSI "),
    ("plain name é 音 🎵", "plain name é 音 🎵"),
]


@pytest.mark.parametrize("text,shown", HOSTILE)
def test_a_terminal_is_shown_text_without_control_sequences(text, shown):
    assert for_terminal(text) == shown
    assert for_terminal(shown) == shown  # nothing left to remove


def test_anything_is_made_text_for_a_terminal():
    assert for_terminal(ValueError("bad\x1b[2J name")) == "bad name"
    assert for_terminal(3.5) == "3.5"


@pytest.mark.parametrize("cell", ['=HYPERLINK("http://x")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\t=1", "\r=1"])
def test_spreadsheet_text_cells_that_start_like_a_formula_are_made_text(cell):
    assert for_spreadsheet(cell) == "'" + cell


@pytest.mark.parametrize("value", [-3.2, 3, 0.0, None, "speech/a.wav", "opus 8", "'quoted", " =spaced"])
def test_spreadsheet_numbers_and_plain_text_are_kept(value):
    assert for_spreadsheet(value) is value


def test_plot_labels_are_literal():
    assert for_plot("$\\frac{a}{$.wav") == "\\$\\frac{a}{\\$.wav"
    assert for_plot("x\x1b[31m\ny") == "x y"
