#!/usr/bin/env bash
# Build the wheel, install it into a fresh venv and run the data verbs from outside the repo.
#
# Catches what an editable install hides: files the code reads at run time that the wheel does not
# carry (the card templates), packages missing from pyproject's list, and dependencies that differ
# from what the code imports (every third-party import must be declared, every declared dependency
# imported). Offline: the build uses this machine's setuptools (--no-build-isolation) and the venv
# sees this machine's site-packages for the dependencies; only dgqa itself comes from the wheel.
#
# Usage: scripts/check_wheel.sh            (from anywhere; KEEP=1 keeps the temporary folder)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/dgqa-wheel.XXXXXX")"
if [[ -z "${KEEP:-}" ]]; then trap 'rm -rf "$TMP"' EXIT; else echo "keeping $TMP"; fi
fail() { echo "check_wheel: FAIL: $*" >&2; exit 1; }
step() { echo "== $* ($SECONDS s)"; }

unset PYTHONPATH
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HOME="$TMP/hf" MPLBACKEND=Agg
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

step "stage the source tree (tracked + untracked, not ignored) in $TMP/src"
# building from a copy keeps build/ and *.egg-info out of the repo, and a stale build/lib out of the wheel
mkdir -p "$TMP/src"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [[ -e "$f" ]] && printf '%s\0' "$f"; done \
    | xargs -0 cp --parents -t "$TMP/src")

step "build the wheel"
"$PY" -m pip wheel --quiet --no-deps --no-build-isolation -w "$TMP/dist" "$TMP/src"
WHEEL="$(ls "$TMP"/dist/dgqa-*.whl)"
echo "built $(basename "$WHEEL")"

step "check the wheel's contents against the source tree"
"$PY" - "$WHEEL" "$TMP/src" <<'EOF'
import ast, importlib.metadata, re, sys, zipfile
from pathlib import Path

wheel, src = sys.argv[1], Path(sys.argv[2])
names = set(zipfile.ZipFile(wheel).namelist())
problems = []
for pkg in ("dgqa_data", "dgqa_train"):  # every module of the source tree, i.e. no package left out
    for f in sorted((src / pkg).rglob("*.py")):
        if f.relative_to(src).as_posix() not in names:
            problems.append(f"missing module {f.relative_to(src)} (add its package to [tool.setuptools] packages)")
cards = {f.name for f in (src / "dataset_cards").glob("*.md")}
shipped = {Path(n).name for n in names if n.startswith("dgqa_data/dataset_cards/") and n.endswith(".md")}
if cards != shipped:
    problems.append(f"card templates: source {sorted(cards)} but wheel {sorted(shipped)}")
stray = sorted({n.split("/")[0] for n in names} - {"dgqa_data", "dgqa_train"} - {n.split("/")[0] for n in names if ".dist-info/" in n})
if stray:
    problems.append(f"unexpected top-level entries {stray}")
if any("__pycache__" in n or n.endswith(".pyc") for n in names):
    problems.append("bytecode in the wheel")
meta = next(zipfile.ZipFile(wheel).read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
version = re.search(r"^Version: (.+)$", meta, re.M).group(1)
source_version = re.search(r'__version__ = "(.+)"', (src / "dgqa_data/__init__.py").read_text()).group(1)
if version != source_version:
    problems.append(f"wheel version {version} != dgqa_data.__version__ {source_version}")
# declared dependencies == distributions of the third-party modules the code imports
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # noqa: E731
declared = {
    norm(re.match(r"[A-Za-z0-9._-]+", line[len("Requires-Dist: "):]).group(0))
    for line in meta.splitlines()
    if line.startswith("Requires-Dist: ") and "extra ==" not in line
}
modules = set()
for pkg in ("dgqa_data", "dgqa_train"):
    for f in (src / pkg).rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules.add(node.module.split(".")[0])
modules -= set(sys.stdlib_module_names) | {"dgqa_data", "dgqa_train"}
dists = importlib.metadata.packages_distributions()
imported = set()
for m in sorted(modules):
    if m not in dists:
        problems.append(f"import {m}: no installed distribution provides it")
    imported |= {norm(d) for d in dists.get(m, [])}
if imported - declared:
    problems.append(f"imported but not in [project] dependencies: {sorted(imported - declared)}")
if declared - imported:
    problems.append(f"declared but never imported: {sorted(declared - imported)}")
if problems:
    sys.exit("check_wheel: FAIL:\n  " + "\n  ".join(problems))
print(f"{len(names)} files, {len(shipped)} card templates, version {version}, {len(declared)} dependencies = imports")
EOF

step "install it into a fresh venv (dependencies from this machine's site-packages)"
"$PY" -m venv --system-site-packages --without-pip "$TMP/venv"
VPY="$TMP/venv/bin/python"
DGQA="$TMP/venv/bin/dgqa"
"$VPY" -m pip install --quiet --no-deps --no-index --force-reinstall "$WHEEL" 2>&1 \
    | { grep -v -e "Running pip as the 'root' user" -e "outside environment" || true; }
[[ -x "$DGQA" ]] || fail "the wheel installed no dgqa console script"

mkdir -p "$TMP/work"
cd "$TMP/work"  # outside the repo: nothing may come from the checkout

step "the wheel wins over any editable install of the checkout"
"$VPY" - <<'EOF'
import importlib, importlib.metadata, sys, sysconfig
from pathlib import Path

site = Path(sysconfig.get_paths()["purelib"]).resolve()
for name in ("dgqa_data", "dgqa_train", "dgqa_data.dataset_cards", "dgqa_data.cards", "dgqa_train.cli"):
    where = Path(importlib.import_module(name).__file__).resolve()
    if site not in where.parents:
        sys.exit(f"check_wheel: FAIL: {name} imports from {where}, not from the venv's {site}")
import dgqa_data
from dgqa_data import cards

template = cards._ENV.get_template("synthetic.md").filename
if site not in Path(template).resolve().parents:
    sys.exit(f"check_wheel: FAIL: card template read from {template}, not from the wheel")
dist = importlib.metadata.distribution("dgqa")
if site not in Path(dist.locate_file("")).resolve().parents and Path(dist.locate_file("")).resolve() != site:
    sys.exit(f"check_wheel: FAIL: dgqa metadata found at {dist.locate_file('')}, not in the venv")
if dist.version != dgqa_data.__version__:
    sys.exit(f"check_wheel: FAIL: dist version {dist.version} != dgqa_data.__version__ {dgqa_data.__version__}")
print(f"dgqa {dist.version} from {Path(dgqa_data.__file__).parent}")
EOF

step "a few PNGs"
"$VPY" - <<'EOF'
from pathlib import Path

import numpy as np
from PIL import Image

out = Path("photos")
out.mkdir()
y, x = np.mgrid[0:48, 0:64]
for i in range(3):
    rng = np.random.default_rng(i)
    base = np.stack([(x * (3 + i)) % 256, (y * (5 + i)) % 256, (x + y) * 2 % 256], -1)
    img = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(out / f"photo{i}.png")
EOF

count_rows() {  # folder, expected number of rows
    "$VPY" -c "
import sys
from datasets import load_dataset
ds = load_dataset(sys.argv[1], split='train')
assert len(ds) == int(sys.argv[2]), f'{sys.argv[1]}: {len(ds)} rows, expected {sys.argv[2]}'
ds[0]['image'].load()
print(f'{sys.argv[1]}: {len(ds)} rows, columns {sorted(ds.column_names)}')
" "$1" "$2"
}

step "dgqa build folder"
"$DGQA" build folder --root photos --out mine
[[ -f mine/README.md ]] || fail "build wrote no card"
count_rows mine 3

step "dgqa synth (1 type x 1 level + pristine on 2 photos)"
"$DGQA" synth --source photos --out synth --types 1 --levels 1 --limit 2
grep -q "gaussian_blur" synth/README.md || fail "synth card lacks the distortion table"
count_rows synth 4

step "dgqa subset --control all"
"$DGQA" subset --source synth --control all --out subset
[[ -f subset/README.md ]] || fail "subset wrote no card"
count_rows subset 4

step "wheel check passed"
