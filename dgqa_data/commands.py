"""The data verbs (``python -m dgqa_data VERB``, also part of ``dgqa``): a registry of verb name ->
module and help line (:data:`VERBS`), read by :mod:`dgqa_data.cli`.

A verb's module is imported only when that verb is on the command line; it provides
``add_arguments(parser)`` (the verb's flags) and ``run(args)``. The glue of ``build``, ``synth``,
``subset`` and ``hydrate`` lives below: it imports nothing heavy until the verb runs.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from dgqa_data.errors import DgqaError, at_least


@dataclass(frozen=True)
class Verb:
    """One sub-command: its name and help line, and where its flags and code live.

    Attributes:
        name: the sub-command, e.g. ``"build"``.
        help: the line shown by ``--help``.
        module: imported only when this verb runs (or its ``--help`` is asked for).
        add: function of ``module`` adding the verb's flags to its parser.
        run: function of ``module`` running the verb with the parsed flags; returns an exit code or
            anything else (exit code 0).
        passthrough: hand every argument unparsed to ``module.main(argv, prog=...)`` (verbs whose
            flags come from a config parser, e.g. ``train``).
    """

    name: str
    help: str
    module: str
    add: str = "add_arguments"
    run: str = "run"
    passthrough: bool = False


#: The registered corpora (``dgqa_data.corpora.list_corpora()``; spelled out so that ``--help`` stays
#: fast: a test keeps the two equal).
CORPUS_NAMES = (
    "agiqa3k", "bid", "csiq", "folder", "kadid10k", "kadis700k", "koniq10k", "live", "livec", "pipal",
    "spaq", "tid2013",
)  # fmt: skip


def build_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``build``."""
    p.add_argument("name", help=f"corpus name ({', '.join(CORPUS_NAMES)})")
    p.add_argument("--root", required=True, help="the unzipped official download")
    p.add_argument("--out", required=True, help="dataset folder to write, e.g. hub/dgqa/kadid10k")
    p.add_argument(
        "--num-proc", type=at_least(1), default=1, help="processes reading and checking images (default 1)"
    )
    p.add_argument(
        "--skip-bad", action="store_true", help="record bad items in skipped.csv instead of failing"
    )
    p.add_argument("--index-only", action="store_true", help="store paths + sha256 instead of image bytes")
    p.add_argument("--verify", choices=["fast", "full"], default="fast", help="full = decode every image")
    p.add_argument("--overwrite", action="store_true", help="replace --out once the new build is complete")
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="corpus-specific option, e.g. resolution=512x384 (koniq10k), score_range=0,100 (folder)",
    )


def parse_options(pairs: list[str]) -> dict[str, str]:
    """``["k=v", ...]`` -> ``{"k": "v"}`` with a clear error on a malformed pair."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise DgqaError(f"--option expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def run_build(args: argparse.Namespace) -> None:
    from dgqa_data.build import build_corpus

    report = build_corpus(
        args.name,
        args.root,
        args.out,
        num_proc=args.num_proc,
        skip_bad=args.skip_bad,
        index_only=args.index_only,
        verify=args.verify,
        overwrite=args.overwrite,
        **parse_options(args.option),
    )
    print(f"wrote {report.out}: {report.num_rows} rows")
    for (config, split), n in report.counts.items():
        print(f"  {config}/{split}: {n}")
    if report.skipped:
        print(f"  skipped {len(report.skipped)} item(s), listed in {report.out / 'skipped.csv'}")


def synth_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``synth``."""
    p.add_argument(
        "--source", required=True, help="KADIS-700k root, a dgqa dataset folder, or a folder of images"
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--plan", choices=["kadis", "full", "random"], default="full")
    p.add_argument("--types", default=None, help="comma-separated type ids or names (default: all 25)")
    p.add_argument("--levels", default=None, help="comma-separated levels (default: 1,2,3,4,5)")
    p.add_argument("--types-per-reference", type=at_least(1), default=1, help="for --plan random")
    p.add_argument("--no-pristine", action="store_true", help="do not include the references as class 0")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=["dataset", "kadis-files"], default="dataset")
    p.add_argument("--encoding", choices=["png", "bmp"], default="png", help="image encoding inside parquet")
    p.add_argument(
        "--refs-per-shard",
        type=at_least(1),
        default=None,
        help="references per shard, the unit of resume and distribution (default: about 16 shards, "
        "at most 32 references each)",
    )
    p.add_argument("--num-proc", type=at_least(1), default=1, help="worker processes (default 1)")
    p.add_argument("--num-shards", type=at_least(1), default=None, help="split the work for a scheduler")
    p.add_argument("--shard-index", type=at_least(0), default=None)
    p.add_argument("--limit", type=at_least(1), default=None, help="use only the first N references")
    p.add_argument("--corpus", default="synthetic", help="value of the corpus column")
    p.add_argument(
        "--labels",
        choices=["none", "severity", "ms-ssim"],
        default="none",
        help="quality labels (mos, 1-5): none (as KADIS-700k), severity (from the applied type and level, "
        "the scale of dgqa_data.severity) or ms-ssim (full-reference pseudo-MOS); default none",
    )
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="record unreadable references in skipped.csv and the card instead of failing",
    )


def run_synth(args: argparse.Namespace) -> None:
    from dgqa_data.schema import type_id
    from dgqa_data.synth import synthesize

    types = [type_id(t) for t in args.types.split(",")] if args.types else None
    levels = [int(v) for v in args.levels.split(",")] if args.levels else None
    out = synthesize(
        args.source,
        args.out,
        plan=args.plan,
        types=types,
        levels=levels,
        types_per_reference=args.types_per_reference,
        include_pristine=not args.no_pristine,
        seed=args.seed,
        fmt=args.format,
        encoding=args.encoding,
        refs_per_shard=args.refs_per_shard,
        num_proc=args.num_proc,
        num_shards=args.num_shards,
        shard_index=args.shard_index,
        limit=args.limit,
        corpus=args.corpus,
        labels=args.labels,
        skip_bad=args.skip_bad,
    )
    print(f"wrote {out}" if out else "shard(s) done; the dataset is finalised when every shard has run")


def subset_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``subset``."""
    p.add_argument(
        "--source", required=True, help="dataset folder written by `dgqa build`, e.g. hub/dgqa/kadid10k"
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--selection", help="selection.json of a selection run")
    which.add_argument(
        "--paper",
        metavar="TARGET",
        help="a selection published by DGQA: livec, koniq10k, bid, pipal1..pipal6",
    )
    p.add_argument(
        "--control",
        choices=["all", "random"],
        help="write a control instead: all types, or a seeded random sample of --size rows "
        "(default size: that of the --selection/--paper subset)",
    )
    p.add_argument("--size", type=at_least(1), default=None, help="rows of a random control")
    p.add_argument("--seed", type=int, default=0, help="seed of a random control")
    p.add_argument(
        "--target", default=None, help="target in the name <source>-sel-<target> (default: the selection's)"
    )
    p.add_argument(
        "--out", default=None, help="folder to write (default: beside --source, named after the subset)"
    )
    p.add_argument("--namespace", default="dgqa", help="Hub namespace named in the card (load_dataset id)")
    p.add_argument(
        "--embed-restricted",
        action="store_true",
        help="embed images of corpora whose terms forbid redistribution (default: index-only, path + sha256)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace --out once the new folder is complete")


def run_subset(args: argparse.Namespace) -> None:
    from dgqa_data.schema import DISTORTION_NAMES
    from dgqa_data.selection import Selection, paper_selection
    from dgqa_data.subsets import write_subset

    selection = None
    if args.selection:
        selection = Selection.load(args.selection)
    elif args.paper:
        selection = paper_selection(args.paper)
    kind = args.control or "selection"
    if kind == "selection" and selection is None:
        raise DgqaError("give --selection, --paper or --control")
    if kind == "all" and (selection is not None or args.size is not None):
        raise DgqaError("--control all takes no --selection, --paper or --size")
    if kind == "selection" and args.size is not None:
        raise DgqaError("--size is for --control random")
    report = write_subset(
        args.source,
        kind=kind,
        selection=selection,
        size=args.size,
        seed=args.seed,
        target=args.target,
        out=args.out,
        namespace=args.namespace,
        embed_restricted=args.embed_restricted,
        overwrite=args.overwrite,
    )
    mode = ", index-only" if report.index_only else ""
    print(f"wrote {report.out}: {report.name}, {report.num_rows} rows{mode}")
    for t, n in report.domain_counts.items():
        print(f"  {t:>2} {DISTORTION_NAMES[t] if t >= 0 else 'authentic'}: {n}")
    if report.missing_types:
        print(f"  warning: selected type(s) {report.missing_types} have no rows in {args.source}")


def hydrate_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``hydrate``."""
    p.add_argument("folder", help="index-only dataset folder")
    p.add_argument("--root", required=True, help="your unzipped official download of the corpus")
    p.add_argument("--out", default=None, help="folder to write (default: replace FOLDER in place)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def run_hydrate(args: argparse.Namespace) -> None:
    from dgqa_data.subsets import hydrate

    report = hydrate(args.folder, args.root, args.out, overwrite=args.overwrite)
    print(f"wrote {report.out}: {report.num_rows} images re-attached, every sha256 verified")


def add_publish(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("publish", help="upload a dataset folder to the Hugging Face Hub (only what changed)")
    p.add_argument("path", help="dataset folder (README.md + data/)")
    p.add_argument(
        "--repo-id", required=True, help="ORG/NAME of the dataset repo, e.g. dgqa/kadid10k-sel-livec"
    )
    p.add_argument("--private", action="store_true", help="create the repo private (ignored if it exists)")
    p.add_argument("--revision", default=None, help="branch to commit to (default: main)")
    p.add_argument("--tag", default=None, help="tag the published head, e.g. v1.0")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="list the files that would go up, with sizes; sends nothing, works offline without a token "
        "(marks them new/changed/unchanged when the Hub can be reached)",
    )
    p.add_argument(
        "--token-env",
        default=None,
        metavar="NAME",
        help="environment variable holding the token (default: HF_TOKEN or the saved login)",
    )
    p.add_argument("--message", default=None, help="commit message")
    p.set_defaults(func=run_publish)


def run_publish(args: argparse.Namespace) -> None:
    from dgqa_data.publish import PublishError, publish, redact, resolve_token

    token = resolve_token(args.token_env)
    try:
        report = publish(
            args.path,
            args.repo_id,
            private=args.private,
            revision=args.revision,
            tag=args.tag,
            dry_run=args.dry_run,
            token=token,
            commit_message=args.message,
        )
    except PublishError as err:
        raise PublishError(redact(str(err), token)) from None
    print(redact(report.summary(), token))


class _Slot:
    """Stands in for a sub-parsers action whose one ``add_parser`` call returns a parser made already."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        return self.parser


def publish_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``publish`` (declared by :func:`add_publish`)."""
    add_publish(_Slot(p))


_HERE = "dgqa_data.commands"

#: The data verbs, in the order ``--help`` lists them. None needs torch.
VERBS: tuple[Verb, ...] = (
    Verb(
        "build",
        "build a Hub-layout dataset from an official corpus download",
        _HERE,
        add="build_arguments",
        run="run_build",
    ),
    Verb(
        "synth",
        "generate a KADIS-style synthetic dataset (25 types x 5 levels)",
        _HERE,
        add="synth_arguments",
        run="run_synth",
    ),
    Verb(
        "select",
        "choose the source domains similar to a scored target (DGQA rule), or a published selection",
        "dgqa_data.selection",
    ),
    Verb(
        "subset",
        "write a DGQA-selected subset (or a control) of a built corpus",
        _HERE,
        add="subset_arguments",
        run="run_subset",
    ),
    Verb(
        "hydrate",
        "re-attach the images of an index-only dataset from your own download",
        _HERE,
        add="hydrate_arguments",
        run="run_hydrate",
    ),
    Verb("splits", "export or import a dataset's published train/test splits (CSV)", "dgqa_data.splits"),
    Verb(
        "publish",
        "upload a dataset folder to the Hugging Face Hub (only what changed)",
        _HERE,
        add="publish_arguments",
        run="run_publish",
    ),
)
