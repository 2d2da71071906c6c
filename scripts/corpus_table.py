"""Print the README's corpus table from the corpus registry; ``--write`` updates README.md in place.

    python scripts/corpus_table.py            # print
    python scripts/corpus_table.py --write    # rewrite the table between its markers in README.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dgqa_data.corpora.summary import markdown_table, with_table

README = Path(__file__).resolve().parent.parent / "README.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument("--write", action="store_true", help="update README.md instead of printing")
    if parser.parse_args().write:
        README.write_text(with_table(README.read_text()))
        print(f"updated {README}")
    else:
        print(markdown_table())


if __name__ == "__main__":
    main()
