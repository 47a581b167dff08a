#!/usr/bin/env bash
# The built wheel works where no checkout is: build it, install it into a fresh venv outside the checkout (no
# system site-packages, no .pth, no PYTHONPATH), then from a folder outside the checkout run `mergescope
# validate` (the shipped specs and rubrics), a --limit 5 sweep of the test zoo with the shipped default spec, and
# `mergescope report` (templates, css and js). Fails if the installed package can see the checkout.
#
#   PY           the python that builds the wheel and makes the venv (default: the checkout's .venv)
#   CONSTRAINTS  the constraints file the venv installs with (default: constraints/cpu.txt; empty: none)
#   TORCH        the torch requirement installed first (default: torch==2.13.0, the CPU wheel; empty: none)
#   ZOO          a built test zoo to copy (default: .cache/test-zoo; without one the installed package builds one)
#   KEEP=1       keep the scratch folder (its path is printed)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$REPO/.venv/bin/python}
CONSTRAINTS=${CONSTRAINTS-$REPO/constraints/cpu.txt}
TORCH=${TORCH-torch==2.13.0}
ZOO=${ZOO:-$REPO/.cache/test-zoo}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mergescope-wheel.XXXXXX")
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1 TOKENIZERS_PARALLELISM=false
start=$SECONDS
step() { echo "[wheel-check $((SECONDS - start)) s] $*"; }
fail() { echo "wheel-check FAILED: $*" >&2; exit 1; }

step "scratch folder $WORK"
case "$WORK/" in "$REPO"/*) fail "the scratch folder $WORK lies inside the checkout";; esac

step "building the wheel from the working tree's files (tracked and new, not ignored: no stale build/)"
mkdir "$WORK/src"
git -C "$REPO" ls-files -z --cached --others --exclude-standard \
  | tar -C "$REPO" --null --files-from=- --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$WORK/src"
"$PY" -m pip wheel -q --no-deps -w "$WORK/dist" "$WORK/src"
WHEEL=$(ls "$WORK"/dist/mergescope-*.whl)
echo "  $(basename "$WHEEL")"
# Everything read at run time must be in the wheel: a missing file fails here, before anything is installed.
"$PY" - "$WHEEL" <<'EOF'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
needed = ["mergescope/py.typed", "mergescope/report/templates/report.css", "mergescope/report/templates/sortable.js",
          "mergescope/report/templates/report.html", "mergescope/merging/sweeps/default.yaml",
          "mergescope/merging/sweeps/study.yaml", "mergescope/scoring/judges/zoo_skills.yaml",
          "mergescope/scoring/judges/questions/zoo_skills.jsonl"]
missing = [n for n in needed if n not in names]
sys.exit(f"not in the wheel: {', '.join(missing)}" if missing else None)
EOF

step "a fresh venv, ${TORCH:-no torch} first, then the wheel with its dependencies (${CONSTRAINTS:-no constraints})"
"$PY" -m venv "$WORK/venv"
BIN=$WORK/venv/bin
constrained=(${CONSTRAINTS:+-c "$CONSTRAINTS"})
[ -z "$TORCH" ] || "$BIN/python" -m pip install -q "${constrained[@]}" "$TORCH"
"$BIN/python" -m pip install -q "${constrained[@]}" "$WHEEL"
step "installed"

mkdir "$WORK/cwd"
cd "$WORK/cwd"
where=$("$BIN/python" -c "import mergescope; print(mergescope.__file__)")
echo "  mergescope imported from $where"
case "$where" in
  "$WORK/venv/"*) ;;
  *) fail "mergescope was imported from $where, not from the fresh venv";;
esac
"$BIN/python" - "$REPO" <<'EOF' || fail "the installed package can see the checkout"
import sys
from pathlib import Path
repo = Path(sys.argv[1]).resolve()
import mergescope.merging.spec as spec, mergescope.scoring.rubric as rubric, mergescope.report.html  # noqa: F401
inside = [str(p) for p in (spec.SWEEPS_DIR, rubric.JUDGES_DIR, *map(Path, sys.path)) if Path(p).resolve().is_relative_to(repo)]
sys.exit(f"inside the checkout: {inside}" if inside else None)
EOF

step "mergescope validate (the shipped sweep specs, search spaces and rubrics)"
"$BIN/mergescope" validate

step "the test zoo: a copy of $ZOO if one is built there, else one built by the installed package"
# A private copy: tests running beside this check may rebuild the shared zoo while the sweep reads it. Any built
# zoo will do for this check, so a shared zoo of another recipe is copied, not rebuilt (that would fight the tests).
# (A script file, not stdin: a zoo trains in spawned processes, which import the main module.)
cat > "$WORK/copy_zoo.py" <<'EOF'
import shutil, sys
from pathlib import Path
from filelock import FileLock
from mergescope.zoo.build import SMALL_WIDTH, TEST_MODELS, ensure_zoo

if __name__ == "__main__":
    shared, private = Path(sys.argv[1]), Path(sys.argv[2])
    with FileLock(str(shared) + ".lock"):  # a build in progress holds it
        if (shared / "zoo.json").is_file():
            shutil.copytree(shared, private)
            sys.exit()
    ensure_zoo(private, progress=False, models=TEST_MODELS, width=SMALL_WIDTH)
EOF
"$BIN/python" "$WORK/copy_zoo.py" "$ZOO" "$WORK/zoo"
ZOO=$WORK/zoo

step "mergescope sweep: the shipped default spec, --limit 5, --backend hf"
"$BIN/mergescope" sweep --parents "$ZOO/models/arith" "$ZOO/models/facts" --base "$ZOO/models/base" \
  --tasks zoo_arith --tasks zoo_facts --task-path "$ZOO/tasks" --limit 5 --backend hf --out run

step "mergescope report"
page=$("$BIN/mergescope" report run | tail -n 1)
[ -f "$page" ] || fail "the report wrote no page (mergescope report printed '$page')"
grep -q "table.sortable" "$page" || fail "$page lacks the report's css"
grep -q "querySelectorAll(\"table.sortable\")" "$page" || fail "$page lacks sortable.js"
echo "  $page: $(wc -c < "$page") bytes, css and js inlined"

step "passed"
