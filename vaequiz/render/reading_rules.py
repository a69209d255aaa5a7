"""The character classes behind the grader's reading of numbers and shapes, as data for pages.

vaequiz/grading/objective.py reads answers with Python's ``\\d``, ``\\s``, ``str.strip`` and
``float``, which accept every Unicode decimal digit (``１２８``, ``٤``) and every Unicode space.
JavaScript's classes differ (``\\d`` is ASCII only, ``\\s`` adds U+FEFF and lacks U+001C-U+001F,
U+0085), and Unicode versions differ between Python and the browser. So the page does not trust
its own classes: it receives the interpreter's, and templates/quiz.js applies the grader's rules
with them. A browser test compares the two on generated inputs.
"""

from __future__ import annotations

import re
import sys
from array import array
from functools import lru_cache

UTF32 = "utf-32-le" if sys.byteorder == "little" else "utf-32-be"

MAX_ANSWER_BYTES = 256 * 1024
"""The most the grader reads of one answer (vaequiz/grading/sandbox/pool.py MAX_SOURCE_BYTES;
a test keeps the two equal). Pages cut longer answers at the box, with a message."""


@lru_cache(maxsize=1)
def reading_rules() -> dict[str, list[int]]:
    """``digit_zeros``: the code point of each Unicode digit zero (digits come in runs of ten);
    ``spaces``: every code point Python counts as whitespace."""
    every_character = array("I", range(0x110000)).tobytes().decode(UTF32, "surrogatepass")
    digits = [m.start() for m in re.finditer(r"\d", every_character)]
    zeros = [code for code in digits if int(chr(code)) == 0]
    if {z + i for z in zeros for i in range(10)} != set(digits):
        raise RuntimeError("Unicode digits no longer come in runs of ten from zero")
    spaces = [m.start() for m in re.finditer(r"\s", every_character)]
    return {"digit_zeros": zeros, "spaces": spaces}
