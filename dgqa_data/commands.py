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


def register(sub: argparse._SubParsersAction) -> None:
    """Add the dgqa_data verbs to the ``dgqa`` parser."""
    add_build(sub)
