"""Dataset cards rendered from the templates in ``dataset_cards/``.

The templates ship as the package ``dgqa_data.dataset_cards``, whose folder is the top-level
``dataset_cards/`` of the source tree (``[tool.setuptools.package-dir]``): a wheel carries them
inside ``dgqa_data/`` and an editable install reads the source folder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jinja2

from dgqa_data import __version__
from dgqa_data.hub_folder import configs_yaml, render_card, size_category
from dgqa_data.schema import DISTORTION_NAMES, GROUP_OF

if TYPE_CHECKING:
    from dgqa_data.selection import Selection

CARDS_PACKAGE = "dgqa_data.dataset_cards"

#: The index-only section of a subset card (:func:`subset_card`) lies between these markers.
INDEX_ONLY_BEGIN = "<!-- dgqa:index-only -->"
INDEX_ONLY_END = "<!-- /dgqa:index-only -->"

DGQA_CITATION = """@inproceedings{li2024dgqa,
  title={Bridging the Synthetic-to-Authentic Gap: Distortion-Guided Unsupervised Domain Adaptation for Blind Image Quality Assessment},
  author={Li, Aobo and Wu, Jinjian and Liu, Yongxu and Li, Leida},
  booktitle={Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year={2024},
  note={arXiv:2405.04167}
}"""

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


def subset_card(
    *,
    source: str,
    source_metadata: dict[str, Any],
    name: str,
    kind: str,
    selection: Selection | None,
    target: str | None,
    size: int,
    seed: int,
    sampled_from: int | None,
    parts: list[tuple[str, str]],
    counts: dict[tuple[str, str], int],
    domain_counts: dict[int, int],
    corpora: list[str],
    restricted: list[str],
    index_only: bool,
    namespace: str = "dgqa",
) -> str:
    """The README.md of a subset (:mod:`dgqa_data.subsets`), all of it: the front matter (licence
    inherited from the source card, tags, ``source_datasets``, ``configs``) and the ``subset.md``
    body, whose index-only section sits between :data:`INDEX_ONLY_BEGIN` and :data:`INDEX_ONLY_END`
    (:func:`dgqa_data.hydrate.hydrated_card` replaces it).

    Args:
        source, source_metadata: the source dataset's name (its folder name) and card front matter.
        name: the subset's name; ``kind``: ``selection``, ``all`` or ``random``.
        selection: the selection (``selection`` kind).
        target: the target named in the card (a random control sized like a selection has one too).
        size, seed, sampled_from: rows kept, and the seed and source rows of a random draw.
        parts, counts: the (config, split) parts written and their rows.
        domain_counts: rows per distortion type id.
        corpora: the ``corpus`` values of the rows; ``restricted``: those whose terms forbid
            redistributing images.
        index_only: the images are stored as paths + sha256.
        namespace: the Hub namespace of ``load_dataset("<namespace>/<name>")``.
    """
    from dgqa_data.corpora.base import find_corpus  # every corpus module: only subsets need them
    from dgqa_data.selection import format_table

    source_pretty = source_metadata.get("pretty_name") or source
    registered = [c for c in (find_corpus(n) for n in corpora) if c is not None]
    license_ = source_metadata.get("license") or (registered[0].license if registered else "other")
    if kind == "selection":
        pretty = f"{source_pretty}, DGQA selection for {target}"
    elif kind == "all":
        pretty = f"{source_pretty}, all distortion types (DGQA control)"
    else:
        pretty = f"{source_pretty}, random {size} images, seed {seed} (DGQA control)"
    tags = [
        "domain-selection",
        "dgqa-subset",
        source,
        *([target] if target and kind == "selection" else []),
    ]
    # Only registered corpora are published under the namespace; a folder or synth source is local.
    on_hub = find_corpus(source) is not None
    source_repo = f"{namespace}/{source}"
    meta = card_metadata(
        pretty_name=pretty,
        license=license_,
        parts=parts,
        num_rows=sum(counts.values()),
        tags=tags,
        source_datasets=[source_repo] if on_hub else None,
    )
    sel = None
    if selection is not None:
        sel = {
            "target": selection.target,
            "rule": selection.rule,
            "threshold": selection.threshold,
            "k": selection.k,
            "num_images": selection.num_images,
            "origin": selection.source,
            "classifier": selection.classifier,
            "dgqa_version": selection.dgqa_version,
            "selected": list(selection.selected),
            "selected_names": selection.selected_names,
            "table": format_table(selection),
        }
    body = render_template(
        "subset",
        subset=name,
        repo_id=f"{namespace}/{name}",
        on_hub=on_hub,
        source_ref=(
            f"[{source_pretty}](https://huggingface.co/datasets/{source_repo})"
            if on_hub
            else f"{source_pretty} (the local dataset `{source}`)"
        ),
        kind=kind,
        pretty_name=pretty,
        source=source,
        source_pretty=source_pretty,
        target=target,
        selection=sel,
        size=size,
        seed=seed,
        sampled_from=sampled_from,
        counts=[{"config": c, "split": s, "rows": n} for (c, s), n in counts.items()],
        num_rows=sum(counts.values()),
        domains=[
            {"id": t, "name": DISTORTION_NAMES[t] if t >= 0 else "authentic / unknown", "count": n}
            for t, n in domain_counts.items()
        ],
        corpora=registered,
        unknown_corpora=[n for n in corpora if find_corpus(n) is None],
        restricted=restricted,
        index_only=index_only,
        index_only_begin=INDEX_ONLY_BEGIN,
        index_only_end=INDEX_ONLY_END,
        license=license_,
        dgqa_citation=DGQA_CITATION,
        version=__version__,
    )
    return render_card(meta, body)
