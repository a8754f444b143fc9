#!/usr/bin/env bash
# The package as a user gets it: build the sdist and the wheel, install the wheel into a fresh virtual
# environment (its dependencies from the package index, nothing from this repository), and run the demo
# bench from an empty folder. Checks: LICENSE in both archives, `onnxnoise --version` equal to
# onnxnoise/__init__.py's __version__, the demo's baseline at its known 932 of 1,000 images (93.2%) and
# SNR 10 seed 0 at 903.
# Usage: scripts/check_wheel.sh [PYTHON]   (PYTHON: an interpreter with `build` installed, the test extra;
#        default .venv/bin/python). Called by .ci/run after the test suite. 2 to 7 minutes (pip downloads).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
py=${1:-$repo/.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$py" -m build --outdir "$work/dist" "$repo" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
version=$("$py" -c "import ast, sys; t = ast.parse(open(sys.argv[1]).read()); print(next(n.value.value for n in t.body if isinstance(n, ast.Assign) and n.targets[0].id == '__version__'))" "$repo/onnxnoise/__init__.py")
wheel=$(ls "$work"/dist/onnxnoise-"$version"-py3-none-any.whl)
sdist=$(ls "$work"/dist/onnxnoise-"$version".tar.gz)
"$py" - "$wheel" "$sdist" "$version" <<'PY'
import sys, tarfile, zipfile
wheel, sdist, version = sys.argv[1:]
names = zipfile.ZipFile(wheel).namelist()
assert f"onnxnoise-{version}.dist-info/licenses/LICENSE" in names, "LICENSE missing from the wheel"
assert "onnxnoise/_demo/fashion_mnist_cnn.onnx" in names, "demo model missing from the wheel"
members = tarfile.open(sdist).getnames()
assert f"onnxnoise-{version}/LICENSE" in members, "LICENSE missing from the sdist"
assert f"onnxnoise-{version}/CHANGELOG.md" in members, "CHANGELOG.md missing from the sdist"
print(f"wheel and sdist {version}: LICENSE, CHANGELOG.md and the demo model present")
PY

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet "$wheel"
mkdir "$work/run" && cd "$work/run"
test "$("$work/venv/bin/onnxnoise" --version)" = "onnxnoise $version"
"$work/venv/bin/onnxnoise" bench --seeds 1 --snr 10 --out "$work/run/demo" >"$work/bench.log" 2>&1 || { cat "$work/bench.log"; exit 1; }
"$work/venv/bin/python" - "$work/run/demo/bench.json" <<'PY'
import json, sys
record = json.load(open(sys.argv[1]))
assert record["baseline"]["top1_acc"] == 93.2, record["baseline"]
noisy = [row for row in record["results"] if row["mode"] == "all"]
assert record["images"] == 1000 and len(noisy) == 1, (record["images"], noisy)
# seed 0 at SNR 10: 903 of 1,000, the count the repository's own demo run gives (README)
assert noisy[0]["top1_acc_mean"] == 90.3, noisy[0]
print(f"demo bench from the installed wheel: baseline {record['baseline']['top1_acc']}%, SNR 10 seed 0 "
      f"{noisy[0]['top1_acc_mean']}% on {record['images']} images")
PY
echo "check_wheel: OK ($(basename "$wheel"), $(basename "$sdist"))"
