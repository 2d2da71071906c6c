"""``dgqa`` sub-commands that only need dgqa_data (build, ...)."""

from __future__ import annotations

import argparse


def add_build(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="build a Hub-layout dataset from an official corpus download")
    p.add_argument("name", help="corpus name (kadid10k, kadis700k, livec, koniq10k, bid, pipal, folder)")
    p.add_argument("--root", required=True, help="the unzipped official download")
    p.add_argument("--out", required=True, help="dataset folder to write, e.g. hub/dgqa/kadid10k")
    p.add_argument("--num-proc", type=int, default=1, help="processes reading and checking images")
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
    p.set_defaults(func=run_build)


def parse_options(pairs: list[str]) -> dict[str, str]:
    """``["k=v", ...]`` -> ``{"k": "v"}`` with a clear error on a malformed pair."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--option expects KEY=VALUE, got {pair!r}")
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


def add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="generate a KADIS-style synthetic dataset (25 types x 5 levels)")
    p.add_argument(
        "--source", required=True, help="KADIS-700k root, a dgqa dataset folder, or a folder of images"
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--plan", choices=["kadis", "full", "random"], default="full")
    p.add_argument("--types", default=None, help="comma-separated type ids or names (default: all 25)")
    p.add_argument("--levels", default=None, help="comma-separated levels (default: 1,2,3,4,5)")
    p.add_argument("--types-per-reference", type=int, default=1, help="for --plan random")
    p.add_argument("--no-pristine", action="store_true", help="do not include the references as class 0")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=["dataset", "kadis-files"], default="dataset")
    p.add_argument("--encoding", choices=["png", "bmp"], default="png", help="image encoding inside parquet")
    p.add_argument("--refs-per-shard", type=int, default=32)
    p.add_argument("--num-proc", type=int, default=1)
    p.add_argument("--num-shards", type=int, default=None, help="split the work for a scheduler")
    p.add_argument("--shard-index", type=int, default=None)
    p.add_argument("--limit", type=int, default=None, help="use only the first N references")
    p.add_argument("--corpus", default="synthetic", help="value of the corpus column")
    p.set_defaults(func=run_synth)


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
    )
    print(f"wrote {out}" if out else "shard(s) done; the dataset is finalised when every shard has run")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the dgqa_data verbs to the ``dgqa`` parser."""
    add_build(sub)
    add_synth(sub)
