"""Dataset cards rendered from the templates in ``dataset_cards/``.

The templates ship as the package ``dgqa_data.dataset_cards``, whose folder is the top-level
``dataset_cards/`` of the source tree (``[tool.setuptools.package-dir]``): a wheel carries them
inside ``dgqa_data/`` and an editable install reads the source folder.
"""

from __future__ import annotations

from typing import Any

import jinja2

from dgqa_data.hub_folder import configs_yaml, render_card, size_category
from dgqa_data.schema import DISTORTION_NAMES, GROUP_OF

CARDS_PACKAGE = "dgqa_data.dataset_cards"

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader(CARDS_PACKAGE, ""),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def render_template(name: str, **context: Any) -> str:
    """Render ``dataset_cards/<name>.md`` with ``context`` (missing variables are errors)."""
    template = _ENV.get_template(f"{name}.md")
    return template.render(taxonomy=taxonomy_rows(), **context)


def taxonomy_rows() -> list[dict[str, Any]]:
    """The 25 KADID distortion types (+ pristine) as table rows."""
    return [
        {"id": i, "name": name, "group": GROUP_OF.get(i, "pristine")}
        for i, name in enumerate(DISTORTION_NAMES)
    ]


def card_metadata(
    *,
    pretty_name: str,
    license: str,
    parts: list[tuple[str, str]],
    num_rows: int,
    tags: list[str] | None = None,
    source_datasets: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """YAML front matter shared by every card dgqa writes."""
    meta: dict[str, Any] = {
        "license": license,
        "pretty_name": pretty_name,
        "tags": ["image-quality-assessment", "iqa", "dgqa", *(tags or [])],
        "task_categories": ["image-classification"],
        "size_categories": [size_category(num_rows)],
    }
    if source_datasets:
        meta["source_datasets"] = source_datasets
    meta["configs"] = configs_yaml(parts)
    meta.update(extra or {})
    return meta


def build_card(template: str, metadata: dict[str, Any], **context: Any) -> str:
    """Full README.md text: ``metadata`` as YAML front matter + the rendered template."""
    return render_card(metadata, render_template(template, **context))
