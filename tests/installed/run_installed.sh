#!/usr/bin/env bash
# The package as users get it: build the wheel, install it (not editable) in a fresh virtual
# environment, and run the installed `dwf` from a temporary folder — never the source tree —
# on the real files in ../shared/realweights. The test suite runs against an editable install
# and cannot see a file missing from the wheel; this can.
#
# Usage: tests/installed/run_installed.sh   (from anywhere; DWF_SHARED overrides ../shared)
# Without ../shared the wheel is still built, installed and checked, and the bundled demo run;
# the real-file part is skipped (and says so).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
shared="${DWF_SHARED:-$repo/../shared}"
python="${PYTHON:-python3}"
work="$(mktemp -d "${TMPDIR:-/tmp}/dwf-installed.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "installed: building the wheel"
# From a clean copy of what the build reads: an in-tree build/ or *.egg-info left by an earlier
# build would slip stale files into the wheel and hide a packaging mistake.
mkdir "$work/src"
cp "$repo/pyproject.toml" "$repo/README.md" "$work/src/"
cp -R "$repo/dwf" "$work/src/dwf"
find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
"$python" -m pip wheel --quiet --no-deps -w "$work/wheel" "$work/src"
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet "$work"/wheel/dwf_darknet-*.whl

failures=0
# Every file of the package in the source tree (code, data, py.typed) is in the wheel. (A miss
# is counted, and the commands still run, to show what it breaks.)
"$work/venv/bin/python" - "$repo" "$work"/wheel/dwf_darknet-*.whl <<'PY' || failures=$((failures + 1))
import os, sys, zipfile
repo, wheel = sys.argv[1], sys.argv[2]
shipped = set(zipfile.ZipFile(wheel).namelist())
wanted = set()
for folder, dirs, files in os.walk(os.path.join(repo, "dwf")):
    dirs[:] = [d for d in dirs if d != "__pycache__"]
    for name in files:
        if name.endswith((".py", ".json", ".cfg")) or name == "py.typed":
            wanted.add(os.path.relpath(os.path.join(folder, name), repo).replace(os.sep, "/"))
missing = sorted(wanted - shipped)
if missing:
    sys.exit(f"installed: FAILED: the wheel lacks {len(missing)} package files: {', '.join(missing)}")
print(f"installed: the wheel holds all {len(wanted)} package files")
PY

cd "$work"  # away from the repo: only the installed package can be imported
dwf="$work/venv/bin/dwf"
"$work/venv/bin/python" -c "import dwf; assert 'site-packages' in dwf.__file__, dwf.__file__"

# expect "<allowed exit codes>" cmd...: the command must exit with one of the codes and must
# never print a traceback (an unexpected exception exits 1 too, like "findings").
expect() {
    local allowed="$1"
    shift
    local rc=0
    "$@" >"$work/out.txt" 2>"$work/err.txt" || rc=$?
    if ! [[ " $allowed " == *" $rc "* ]] || grep -q "Traceback" "$work/err.txt"; then
        echo "installed: FAILED (exit $rc, expected $allowed): ${*#"$work"/}"
        tail -n 5 "$work/err.txt" | sed 's/^/    /'
        failures=$((failures + 1))
    else
        echo "installed: ok (exit $rc): dwf ${*:2}"
    fi
}

expect "0" "$dwf" --version
expect "0" "$dwf" demo "$work/demo"
expect "0" "$dwf" info "$work/demo/demo.weights"

real="$shared/realweights"
if [ -d "$real" ]; then
    for name in yolo-fastest-1.1/yolo-fastest-1.1 lebhoryi-yolo-v2-tiny-last/yolo_v2_tiny_last \
        darknet-reference-tiny/tiny; do
        w="$real/$name.weights"
        [ -f "$w" ] || { echo "installed: FAILED: $w is missing"; failures=$((failures + 1)); continue; }
        cfg="$(ls "$(dirname "$w")"/*.cfg | head -n 1)"
        out="$work/out-$(basename "$name")"
        mkdir -p "$out"
        expect "0 1" "$dwf" identify "$w"
        expect "0" "$dwf" info "$w" --cfg "$cfg"
        # Alone in a folder, without its cfg: a clean error (exit 2) that consults the shipped
        # table of known models — the 0.1.0 wheel crashed here with a traceback.
        cp "$w" "$out/alone.weights"
        expect "2" "$dwf" info "$out/alone.weights"
        expect "0 1" "$dwf" check "$w" --cfg "$cfg"
        expect "0" "$dwf" cut "$w" "$out/cut.weights" 2 --cfg "$cfg"
        expect "0" "$dwf" export "$w" "$out/e.npz" --format npz --cfg "$cfg"
        expect "0" "$dwf" import "$out/e.npz" "$out/back.weights"
        if ! cmp -s "$w" "$out/back.weights"; then
            echo "installed: FAILED: export + import of $name is not byte-identical"
            failures=$((failures + 1))
        fi
        expect "0" "$dwf" fuse "$w" "$out/fused.weights" "$out/fused.cfg" --cfg "$cfg"
        expect "0" "$dwf" info "$out/fused.weights" --cfg "$out/fused.cfg"
    done
else
    echo "installed: $real not present: real-file checks skipped"
fi

if [ "$failures" -ne 0 ]; then
    echo "installed: $failures check(s) failed"
    exit 1
fi
echo "installed: all checks passed"
