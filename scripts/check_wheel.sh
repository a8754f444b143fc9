#!/usr/bin/env bash
# The package as a user gets it: build the sdist and the wheel, install the wheel into a fresh virtual
# environment (its dependencies from the package index, nothing from this repository), and run the demo
# bench and the Python API example of docs/api.md from an empty folder. Checks: LICENSE in both archives,
# py.typed in the wheel, `onnxnoise --version` equal to onnxnoise/__init__.py's __version__, the demo's
# baseline at its known 932 of 1,000 images (93.2%) and SNR 10 seed 0 at 903 (the API example asserts the same).
# Usage: [VENV_PYTHON=python3.X] scripts/check_wheel.sh [PYTHON]   (VENV_PYTHON: the interpreter of the fresh
#        environment, default python3; PYTHON: an interpreter with `build` installed, the test extra;
#        default .venv/bin/python). Called by .ci/run after the test suite. 2 to 7 minutes (pip downloads).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
py=${1:-$repo/.venv/bin/python}
# a path (not a name on PATH) made absolute: the checks below run from other folders
if [[ $py == */* ]]; then py="$(cd "$(dirname "$py")" && pwd)/$(basename "$py")"; fi
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
assert "onnxnoise/py.typed" in names and "onnxnoise/__init__.pyi" in names, "py.typed or __init__.pyi missing from the wheel"
members = tarfile.open(sdist).getnames()
assert f"onnxnoise-{version}/LICENSE" in members, "LICENSE missing from the sdist"
assert f"onnxnoise-{version}/CHANGELOG.md" in members, "CHANGELOG.md missing from the sdist"
print(f"wheel and sdist {version}: LICENSE, CHANGELOG.md and the demo model present")
PY

"${VENV_PYTHON:-python3}" -m venv "$work/venv"
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
# seed 0 at SNR 10: 903 of 1,000, the count the repository's own demo run gives (docs/api.md)
assert noisy[0]["top1_acc_mean"] == 90.3, noisy[0]
print(f"demo bench from the installed wheel: baseline {record['baseline']['top1_acc']}%, SNR 10 seed 0 "
      f"{noisy[0]['top1_acc_mean']}% on {record['images']} images")
PY
# The API example of docs/api.md, copied out of the repository first, run from another empty folder.
"$py" - "$repo/docs/api.md" "$work/api_example.py" <<'PY'
import re, sys
blocks = re.findall(r"^```python\n(.*?)^```$", open(sys.argv[1], encoding="utf-8").read(), flags=re.MULTILINE | re.DOTALL)
assert len(blocks) == 1, f"docs/api.md should hold one python example, found {len(blocks)}"
open(sys.argv[2], "w", encoding="utf-8").write(blocks[0])
PY
mkdir "$work/api" && cd "$work/api"
"$work/venv/bin/python" "$work/api_example.py" >"$work/api.log" 2>&1 || { cat "$work/api.log"; exit 1; }
test -z "$(ls -A "$work/api")" || { echo "the API example left files in its folder"; ls -A "$work/api"; exit 1; }
echo "API example of docs/api.md from the installed wheel: OK"
echo "check_wheel: OK ($(basename "$wheel"), $(basename "$sdist"))"
