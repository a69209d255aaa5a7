"""The stats report as one self-contained HTML page (template: templates/stats.html.j2)."""

from __future__ import annotations

import json
from pathlib import Path

from markupsafe import Markup

from vaequiz.render.markdown import MathRenderError, render_inline
from vaequiz.stats.analysis import (
    GROUP_SHARE,
    TOO_EASY,
    TOO_HARD,
    VARIANT_ALPHA,
    VARIANT_MIN_STUDENTS,
    OptionShare,
    StatsReport,
)
from vaequiz.stats.plots import histogram_svg, item_map_svg, option_bars_svg
from vaequiz.templating import template_environment


def _number(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _option_html(option: OptionShare) -> Markup:
    """An option as the quiz showed it: its Markdown text (with math), then its code."""
    parts = []
    if option.text:
        try:
            parts.append(Markup(render_inline(option.text)))
        except MathRenderError:
            parts.append(Markup.escape(option.text))
    if option.code:
        parts.append(Markup('<code class="option-code">{}</code>').format(option.code.rstrip("\n")))
    return Markup(" ").join(parts)


def render_html(report: StatsReport) -> str:
    """The report page; plots are SVG built from escaped text, everything else autoescaped."""
    environment = template_environment()
    environment.filters["num"] = _number
    environment.filters["option_html"] = _option_html
    template = environment.get_template("stats.html.j2")
    return template.render(
        report=report,
        histogram=Markup(histogram_svg(report.quiz.histogram)),
        item_map=Markup(item_map_svg(report.items)),
        option_plots={
            item.question: Markup(option_bars_svg(item.question, item.options))
            for item in report.items
            if item.options
        },
        thresholds={"too_easy": TOO_EASY, "too_hard": TOO_HARD, "group": GROUP_SHARE,
                    "variant_min": VARIANT_MIN_STUDENTS, "variant_alpha": VARIANT_ALPHA},
    )


def write_html(report: StatsReport, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(report), encoding="utf-8")


def to_json(report: StatsReport) -> str:
    return json.dumps(report.to_dict(), indent=2)
