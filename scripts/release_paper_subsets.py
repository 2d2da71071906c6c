"""Build dgqa/kadid10k and the DGQA paper subsets (+ controls), ready to publish.

From a local KADID-10k download (or an already built ``kadid10k`` folder) this writes, beside each
other under ``--out``::

    kadid10k/                      the corpus (built first if missing)
    kadid10k-sel-<target>/         the nine published selections (livec, koniq10k, bid, pipal1..6)
    kadid10k-all/                  the all-types control
    kadid10k-random-<n>-seed<s>/   with --random-seeds: one random control per distinct subset size

Folders already there are kept (every folder is written atomically, so an existing one is complete);
``--overwrite`` rebuilds them. Nothing is uploaded: the script prints the ``dgqa publish`` commands.

    python scripts/release_paper_subsets.py --kadid-root /data/kadid10k --out hub/dgqa --tag v1.0
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from dgqa_data.build import build_corpus
from dgqa_data.selection import PAPER_SELECTIONS, paper_selection
from dgqa_data.subsets import all_control, all_name, random_control, random_name, select_subset, subset_name


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kadid-root", type=Path, help="unzipped KADID-10k download (dmos.csv + images/)")
    p.add_argument("--source", type=Path, help="an already built kadid10k dataset folder")
    p.add_argument("--out", type=Path, default=None, help="parent folder of the datasets (default: hub/dgqa)")
    p.add_argument("--namespace", default="dgqa", help="Hub namespace of the repos")
    p.add_argument("--targets", nargs="+", default=list(PAPER_SELECTIONS), help="paper targets to release")
    p.add_argument("--random-seeds", type=int, nargs="*", default=[], help="seeds of random controls")
    p.add_argument("--tag", default=None, help="version tag put in the printed publish commands")
    p.add_argument("--num-proc", type=int, default=1, help="processes for the corpus build")
    p.add_argument("--overwrite", action="store_true", help="rebuild folders that already exist")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out or (args.source.parent if args.source else Path("hub/dgqa"))
    source = args.source or out / "kadid10k"
    if not source.exists() or (args.overwrite and args.kadid_root):
        if args.kadid_root is None:
            print(f"{source} does not exist: pass --kadid-root to build it", file=sys.stderr)
            return 2
        report = build_corpus(
            "kadid10k", args.kadid_root, source, num_proc=args.num_proc, overwrite=args.overwrite
        )
        print(f"built {report.out}: {report.num_rows} rows")

    folders = [source]

    def write(name: str, make) -> None:
        folder = out / name
        if folder.exists() and not args.overwrite:
            print(f"kept {folder} (exists; --overwrite rebuilds it)")
        else:
            report = make(folder)
            print(f"wrote {report.out}: {report.num_rows} rows")
        folders.append(folder)

    common = {"namespace": args.namespace, "overwrite": args.overwrite}
    sizes: list[int] = []
    for target in args.targets:
        sel = paper_selection(target)
        name = subset_name(source.name, sel.target)
        write(name, lambda f, sel=sel: select_subset(source, sel, out=f, **common))
        sizes.append(_rows(out / name))
    write(all_name(source.name), lambda f: all_control(source, out=f, **common))
    for seed in args.random_seeds:
        for size in sorted(set(sizes)):
            write(
                random_name(source.name, size, seed),
                lambda f, n=size, s=seed: random_control(source, n, s, out=f, **common),
            )

    print("\nto publish (token from HF_TOKEN or `hf auth login`):")
    tag = f" --tag {shlex.quote(args.tag)}" if args.tag else ""
    for folder in folders:
        repo_id = f"{args.namespace}/{folder.name}"
        print(f"dgqa publish {shlex.quote(str(folder))} --repo-id {repo_id}{tag}")
    return 0


def _rows(folder: Path) -> int:
    """Rows of a written subset (from ``subset.json``)."""
    return int(json.loads((folder / "subset.json").read_text(encoding="utf-8"))["rows"])


if __name__ == "__main__":
    from dgqa_data.cli import guarded

    sys.exit(guarded("release_paper_subsets", main))
