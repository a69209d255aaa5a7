"""The one Jinja environment over ``templates/``: autoescaping and strict undefined everywhere."""

from __future__ import annotations

from functools import lru_cache

import jinja2

from vaequiz.paths import templates_dir


@lru_cache(maxsize=1)
def template_environment() -> jinja2.Environment:
    """Every page vaequiz writes is rendered here, so escaping rules are the same for all."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
