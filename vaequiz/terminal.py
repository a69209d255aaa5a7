"""Untrusted text made safe to print on a terminal.

A student's snippet chooses what it prints and the text of the errors it raises. Printed as
is, ESC, CSI, OSC and the other control characters would let it clear the screen, retitle the
window or draw a fake report. Standard library only, so any layer may use it.
"""

from __future__ import annotations

_VISIBLE = {
    **{code: f"\\x{code:02x}" for code in range(0x20) if chr(code) not in "\n\t"},
    0x7F: "\\x7f",
    **{code: f"\\x{code:02x}" for code in range(0x80, 0xA0)},
    # Bidirectional overrides and isolates reorder what the terminal shows ("Trojan source").
    **{code: f"\\u{code:04x}" for code in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))},
}
"""ESC, DEL, the C0 and C1 controls (except newline and tab) and the bidi controls."""
_TABLE = str.maketrans(_VISIBLE)


def printable(text: str) -> str:
    """``text`` with every control character written as a visible escape such as ``\\x1b``."""
    return text.translate(_TABLE)
