"""Inline SVG plots for the stats report: no script, no external file, every text escaped."""

from __future__ import annotations

from html import escape

from vaequiz.stats.analysis import HistogramBin, ItemStats, OptionShare, TOO_EASY, TOO_HARD


LABEL_GRID = 16
"""Points closer than this (in SVG units) share one label on the item map."""
MAX_LABELLED = 4


def _svg(width: int, height: int, label: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(label)}">'
        f"<title>{escape(label)}</title>" + "".join(body) + "</svg>"
    )


def histogram_svg(bins: list[HistogramBin]) -> str:
    """Students per band of total score (percent of the maximum)."""
    width, height, left, bottom, top = 440, 220, 24, 30, 12
    plot_w, plot_h = width - left - 24, height - bottom - top
    most = max((b.count for b in bins), default=0) or 1
    bar_w = plot_w / max(1, len(bins))
    body = [f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" class="axis"/>']
    for i, b in enumerate(bins):
        h = plot_h * b.count / most
        x = left + i * bar_w
        body.append(
            f'<rect class="bar" x="{x + 1:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 2:.1f}" '
            f'height="{h:.1f}"><title>{b.low:.0f}-{b.high:.0f}%: {b.count} student(s)</title></rect>'
        )
        if b.count:
            body.append(f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h - h - 2:.1f}" '
                        f'text-anchor="middle" class="small">{b.count}</text>')
        if i % 2 == 0:
            body.append(f'<text x="{x:.1f}" y="{height - 12}" text-anchor="middle" '
                        f'class="small">{b.low:.0f}%</text>')
    body.append(f'<text x="{left + plot_w:.1f}" y="{height - 12}" text-anchor="middle" '
                'class="small">100%</text>')
    return _svg(width, height, "Histogram of total scores in percent", body)


def item_map_svg(items: list[ItemStats]) -> str:
    """Facility (x) against point-biserial discrimination (y); flagged regions shaded."""
    width, height, left, bottom, top, right = 440, 300, 40, 34, 10, 10
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(f: float) -> float:
        return left + plot_w * f

    def y(r: float) -> float:
        return top + plot_h * (1 - (r + 1) / 2)

    body = [
        f'<rect class="zone" x="{left}" y="{top}" width="{plot_w * TOO_HARD:.1f}" height="{plot_h}"/>',
        f'<rect class="zone" x="{x(TOO_EASY):.1f}" y="{top}" width="{plot_w * (1 - TOO_EASY):.1f}" '
        f'height="{plot_h}"/>',
        f'<rect class="zone" x="{left}" y="{y(0):.1f}" width="{plot_w}" height="{plot_h / 2:.1f}"/>',
        f'<rect class="frame" x="{left}" y="{top}" width="{plot_w}" height="{plot_h}"/>',
        f'<line class="axis" x1="{left}" y1="{y(0):.1f}" x2="{left + plot_w}" y2="{y(0):.1f}"/>',
        f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle" class="small">'
        "facility (mean score)</text>",
        f'<text x="12" y="{top + plot_h / 2}" transform="rotate(-90 12 {top + plot_h / 2})" '
        'text-anchor="middle" class="small">discrimination r</text>',
    ]
    for tick in (0.0, 0.5, 1.0):
        body.append(f'<text x="{x(tick):.1f}" y="{top + plot_h + 14}" text-anchor="middle" '
                    f'class="small">{tick:g}</text>')
    for tick in (-1.0, 0.0, 1.0):
        body.append(f'<text x="{left - 4}" y="{y(tick) + 4:.1f}" text-anchor="end" '
                    f'class="small">{tick:g}</text>')
    clusters: dict[tuple[int, int], list[ItemStats]] = {}
    for item in items:
        if item.point_biserial is None:
            continue
        css = "point flagged" if item.flags else "point"
        cx, cy = x(item.facility), y(item.point_biserial)
        body.append(
            f'<circle class="{css}" cx="{cx:.1f}" cy="{cy:.1f}" '
            f'r="5"><title>{item.number}. {escape(item.question)}: facility {item.facility:.2f}, '
            f'r {item.point_biserial:.2f}</title></circle>'
        )
        clusters.setdefault((round(cx / LABEL_GRID), round(cy / LABEL_GRID)), []).append(item)
    # Each point is labelled with its number from the items table; points that (nearly)
    # coincide share one label, so labels never print over each other.
    for members in clusters.values():
        cx, cy = x(members[0].facility), y(members[0].point_biserial or 0.0)
        numbers = [str(m.number) for m in members]
        text = ", ".join(numbers[:MAX_LABELLED]) + (f" +{len(numbers) - MAX_LABELLED}" if len(numbers) > MAX_LABELLED else "")
        anchor, dx = ("end", -8) if cx > left + plot_w / 2 else ("start", 8)
        body.append(f'<text class="small point-label" x="{cx + dx:.1f}" y="{cy + 4:.1f}" '
                    f'text-anchor="{anchor}">{escape(text)}</text>')
    return _svg(width, height, "Item map: facility against discrimination", body)


def option_bars_svg(question: str, options: list[OptionShare]) -> str:
    """Share of students choosing each option; the key is drawn in its own colour."""
    row, left, width = 22, 80, 440
    height = row * len(options) + 6
    plot_w = width - left - 60
    body = []
    for i, option in enumerate(options):
        y = 3 + i * row
        css = "bar key" if option.is_key else "bar"
        name = option.label + (" (key)" if option.is_key else "")
        body.append(f'<text x="{left - 6}" y="{y + 15}" text-anchor="end" class="small">'
                    f"{escape(name)}</text>")
        body.append(f'<rect class="{css}" x="{left}" y="{y + 3}" width="{plot_w * option.share:.1f}" '
                    f'height="{row - 6}"/>')
        body.append(f'<text x="{left + plot_w * option.share + 4:.1f}" y="{y + 15}" class="small">'
                    f"{100 * option.share:.0f}%</text>")
    return _svg(width, height, f"Options chosen in {question}", body)
