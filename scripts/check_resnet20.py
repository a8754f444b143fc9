"""The "Must show" runs of issue 11 for `onnxnoise check` on ResNet20, full CIFAR-10 test set.

Runs, each through the real CLI (``python -m onnxnoise.cli check ...``), writing its check.json,
junit.xml, check.md and trial table under ``OUT/<case>/``:

* ``pass-snr100`` / ``pass-snr100-seed100``: folded export, SNR 100, budget 1 point: PASS in the
  minimum number of draws (5), with seeds 0.. and again with seeds 100..;
* ``fail-snr5`` / ``fail-snr5-seed100``: folded, SNR 5, budget 1: FAIL, both seed blocks;
* ``bn-snr10`` / ``bn-snr10-seed100``: the BatchNormalization-kept export, SNR 10, budget 1:
  FAIL or INCONCLUSIVE, collapse rate shown, both seed blocks;
* ``find-min-snr``: folded, ``--find-min-snr --snr 5,100``, budget 1; then ``find-recheck``
  runs the printed re-check command (must PASS) and ``find-10pct-lower`` the same at
  0.9 x the found SNR (must not PASS);
* ``protect-snr5``: folded, SNR 5, budget 1, ``--protect auto``: the gate fails and the
  plan (kept layers, parameters kept, verification with independent seeds) is reported.

Then ``OUT/summary.md`` and ``OUT/summary.json`` list every case with its exit code,
verdict, draws, bounds and collapse rate, and whether it is as the issue expects; the
script exits 1 when any case is not.

Models: ``build/models/resnet20-folded.onnx`` and ``build/models/resnet20-bn.onnx`` (the
names experiments/cifar10-resnet.toml uses), exported with ``scripts/export_models.py``
(needs torch, the ``export`` extra) when missing.

Usage (from the repository root; ~tens of minutes on a laptop CPU)::

    python scripts/check_resnet20.py [--shared ../shared] [--out reports/check-resnet20] [--device auto]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "build" / "models"


def export(shared: Path, name: str, keep_batchnorm: bool) -> Path:
    """``build/models/<name>.onnx``, exported from the ResNet20 checkpoint if missing."""
    path = MODELS / f"{name}.onnx"
    if not path.exists():
        MODELS.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, str(ROOT / "scripts" / "export_models.py"), "cifar-resnet", "--depth", "20",
               "--checkpoint", str(shared / "models" / "cifar10-resnet" / "resnet20.th"), "--out", str(path)]
        subprocess.run(cmd + (["--keep-batchnorm"] if keep_batchnorm else []), check=True)
    return path


def check(argv: list[str], out: Path) -> tuple[int, dict]:
    """Run ``onnxnoise check`` with ``argv`` into ``out``; its exit code and check.json."""
    cmd = [sys.executable, "-m", "onnxnoise.cli", "check", *argv, "--out", str(out)]
    print("$", " ".join(shlex.quote(c) for c in cmd[2:]), flush=True)
    code = subprocess.run(cmd, cwd=ROOT).returncode
    report = json.loads((out / "check.json").read_text()) if (out / "check.json").exists() else {}
    return code, report


def row(case: str, code: int, report: dict, expected: str, ok: bool) -> dict:
    gate = report.get("gate") or {}
    bounds = gate.get("bounds") or {}
    plan = report.get("protection") or {}
    search = report.get("search") or {}
    return {
        "case": case, "exit_code": code, "verdict": report.get("verdict"), "expected": expected, "as_expected": ok,
        "draws": gate.get("draws"), "seeds": gate.get("seeds"), "mean_drop": bounds.get("mean"),
        "lower": bounds.get("lower"), "upper": bounds.get("upper"), "collapsed": gate.get("collapsed"),
        "collapse_rate": gate.get("collapse_rate"), "baseline_top1": (report.get("baseline") or {}).get("top1_acc"),
        "found": search.get("found"), "bracket": search.get("bracket"), "kept": plan.get("kept"),
        "kept_params": plan.get("kept_params"), "kept_percent": plan.get("kept_percent"),
        "plan_verdict": plan.get("verdict"), "recheck_command": report.get("recheck_command"),
    }


def _num(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "check-resnet20")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    data = args.shared / "data" / "cifar-10-batches-py"
    folded = export(args.shared, "resnet20-folded", keep_batchnorm=False)
    bn = export(args.shared, "resnet20-bn", keep_batchnorm=True)
    common = ["--data", str(data), "--max-drop", "1", "--device", args.device]
    rows = []

    def case(name: str, model: Path, extra: list[str], expected: str, ok) -> dict:
        code, report = check([str(model), *common, *extra], args.out / name)
        result = row(name, code, report, expected, bool(ok(code, report)))
        rows.append(result)
        return report

    min_draws = lambda r: (r.get("gate") or {}).get("draws") == 5  # noqa: E731
    for suffix, seed in (("", []), ("-seed100", ["--first-seed", "100"])):
        case(f"pass-snr100{suffix}", folded, ["--snr", "100", *seed], "PASS in 5 draws",
             lambda c, r: c == 0 and min_draws(r))
        case(f"fail-snr5{suffix}", folded, ["--snr", "5", *seed], "FAIL", lambda c, r: c == 1)
        case(f"bn-snr10{suffix}", bn, ["--snr", "10", *seed], "FAIL or INCONCLUSIVE, collapse rate shown",
             lambda c, r: c in (1, 3) and (r.get("gate") or {}).get("collapse_rate") is not None)
    found = case("find-min-snr", folded, ["--find-min-snr", "--snr", "5,100"], "a passing SNR found",
                 lambda c, r: c == 0 and (r.get("search") or {}).get("found") is not None)
    command = found.get("recheck_command")
    snr = (found.get("search") or {}).get("found")
    if command and snr:
        argv = shlex.split(command)[2:]  # drop "onnxnoise check"
        code, report = check(argv, args.out / "find-recheck")
        rows.append(row("find-recheck", code, report, "PASS (same seeds: same draws)", code == 0))
        lower = [*argv[:-1], repr(round(0.9 * snr, 6))]
        code, report = check(lower, args.out / "find-10pct-lower")
        rows.append(row("find-10pct-lower", code, report, "not PASS at 0.9 x the found SNR", code != 0))
    case("protect-snr5", folded, ["--snr", "5", "--protect", "auto"], "gate FAIL, plan verified PASS",
         lambda c, r: c == 1 and (r.get("protection") or {}).get("verdict") == "PASS")

    digest = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12] for p in (folded, bn)}
    lines = ["# onnxnoise check on ResNet20 (issue 11, Must show)", "",
             f"Data: {data} (full CIFAR-10 test set). Models: "
             + ", ".join(f"{name} (sha256 {sha})" for name, sha in digest.items()) + ". Budget 1 point of top-1.", "",
             "| case | exit | verdict | expected | as expected | draws | drop | bounds | collapsed | notes |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        notes = []
        if r["found"] is not None:
            notes.append(f"found SNR {r['found']}, bracket {r['bracket']}")
        if r["kept"] is not None:
            notes.append(f"plan {r['plan_verdict']}: keep {', '.join(r['kept']) or '-'} ({r['kept_params']} "
                         f"parameters, {_num(r['kept_percent'])}%)")
        collapsed = "-" if r["collapsed"] is None else f"{r['collapsed']}/{r['draws']}"
        lines.append(f"| {r['case']} | {r['exit_code']} | {r['verdict']} | {r['expected']} | "
                     f"{'yes' if r['as_expected'] else '**no**'} | {r['draws'] or '-'} | {_num(r['mean_drop'])} | "
                     f"[{_num(r['lower'])}, {_num(r['upper'])}] | {collapsed} | {'; '.join(notes)} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    (args.out / "summary.json").write_text(json.dumps({"models": digest, "cases": rows}, indent=2) + "\n")
    print("\n".join(lines))
    return 0 if all(r["as_expected"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
