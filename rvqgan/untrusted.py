"""Untrusted text (file and folder names, names read from files, what listeners typed) made safe
where it is shown: a terminal, a spreadsheet, a plot.

Such text reaches the user through channels that interpret it: a terminal obeys escape
sequences (a file name can clear the screen, retitle the window or hide the text before it), a
spreadsheet evaluates a cell that starts like a formula, matplotlib parses `$...$` as maths (and
fails on what it cannot parse). Each function here takes the text as it is and returns what can
be shown in one of those places as plain text. HTML needs only `html.escape`, applied where the
page is written.
"""

from __future__ import annotations

import re

# ESC sequences as a whole (CSI with its parameters, OSC/DCS/APC/PM/SOS strings up to their end,
# two-character ones), so that no parameter text is left behind, then single control characters:
# C0, DEL, C1, and the Unicode bidirectional overrides, which reorder what a terminal displays.
_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?"  # CSI
    r"|\x9b[0-?]*[ -/]*[@-~]?"  # CSI, in its C1 form
    r"|[\x1b][\]PX^_][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # OSC, DCS, SOS, PM, APC strings
    r"|[\x90\x9d\x98\x9e\x9f][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # the same, in C1 form
    r"|\x1b[ -/]*[0-~]?"  # any other ESC sequence
)
_SPACES = re.compile(r"[\t\n\r\v\f]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# Leading characters that make a spreadsheet read a cell as a formula (or, for tab and CR, that
# some import paths strip before doing so).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def for_terminal(text: object) -> str:
    """`text` as a single line a terminal shows as it reads: escape sequences removed whole, line
    breaks and tabs made spaces, every other control character (C0, DEL, C1, bidirectional
    overrides) removed."""
    return _CONTROL.sub("", _SPACES.sub(" ", _SEQUENCE.sub("", str(text))))


def for_spreadsheet(value: object) -> object:
    """A CSV cell that a spreadsheet shows as text: a string starting like a formula gets a leading
    `'` (what spreadsheets themselves use to mark text). Anything else, numbers included (-3.2
    stays a number), is returned as it is."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def for_plot(text: object) -> str:
    """`text` as a matplotlib label shown literally: `$` escaped (so no maths parsing, which can fail)
    and control characters removed as for a terminal."""
    return for_terminal(text).replace("$", r"\$")
