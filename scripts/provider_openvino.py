"""Why the OpenVINO plugin execution provider runs or not on this machine, measured (docs/providers.md).

Run it in a virtual environment with ``onnxruntime``, ``onnxruntime-ep-openvino`` and ``openvino``
beside onnxnoise (never the project's own: the plugin is not a dependency):

    python -m venv /tmp/ov && /tmp/ov/bin/pip install -e . onnxruntime==1.32.0 onnxruntime-ep-openvino openvino
    /tmp/ov/bin/python scripts/provider_openvino.py build/resnet20.onnx --data ../shared/data/cifar-10-batches-py \
        --limit 2000 --snr 10 --seed 0

It prints, as JSON: the versions; the hardware devices ONNX Runtime discovers (type, vendor, vendor id)
and the ``OrtEpDevice`` s it offers after registering the plugin library; the devices OpenVINO itself
sees; and, on the same preprocessed images, the clean and one noisy model's top-1 counts and images per
second on ONNX Runtime's CPU provider and on OpenVINO's own runtime (``openvino.Core``, its CPU plugin,
not through ONNX Runtime; at its default precision and at f32), which shows whether the CPU can run OpenVINO at all. When the plugin offers a
device, ``onnxnoise bench --provider OpenVINOExecutionProvider`` runs it end to end.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from onnxnoise.config import RunConfig
from onnxnoise.engine.context import prepare_context
from onnxnoise.noise import draw_noise


def _devices() -> list[dict]:
    return [{"ep": d.ep_name, "type": str(d.device.type).rsplit(".", 1)[-1], "vendor": d.device.vendor,
             "vendor_id": f"{d.device.vendor_id:#06x}"} for d in ort.get_ep_devices()]


def _count(run, data, repeats: int = 3) -> dict:
    """Top-1 correct of ``run(batch) -> scores`` over ``data``, and the median images per second of ``repeats``
    passes (the machine is shared: one pass's rate varies)."""
    rates, counts = [], set()
    for _ in range(repeats):
        correct, start = 0, time.perf_counter()
        for x, labels in data.batches():
            scores = run(x)[: len(labels)]
            correct += int((scores.argmax(axis=1) == labels).sum())
        rates.append(len(data) / (time.perf_counter() - start))
        counts.add(correct)
    assert len(counts) == 1, f"top-1 differs between passes: {counts}"
    return {"top1": counts.pop(), "images_per_s": round(float(np.median(rates)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--snr", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import onnxruntime_ep_openvino as plugin  # noqa: PLC0415 - only in the measuring venv
    import openvino  # noqa: PLC0415

    report: dict = {"onnxruntime": ort.__version__, "openvino": openvino.__version__,
                    "devices_before": _devices(), "library": plugin.get_library_path()}
    ort.register_execution_provider_library("OpenVINOExecutionProvider", plugin.get_library_path())
    report["devices_after_registration"] = _devices()
    core = openvino.Core()
    report["openvino_devices"] = {d: core.get_property(d, "FULL_DEVICE_NAME") for d in core.available_devices}

    context = prepare_context(RunConfig(model=args.model, data=args.data, limit=args.limit, device="cpu"))
    noise = context.config.noise.noise_model
    draw = draw_noise(noise, args.snr, args.seed, context.selected, context.initializers)
    output = context.io.output_name
    for label, replacements in (("clean", {}), (f"snr {args.snr:g}, seed {args.seed}", draw.arrays)):
        model_bytes = context.factory.standalone_bytes(replacements)
        session = context.factory.create(replacements)
        cpu = _count(session.run, context.data)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.onnx"
            onnx.save(onnx.load_from_string(model_bytes), path)
            runs = {}
            for hint in ("default", "f32"):  # OpenVINO's CPU default is bf16 where the CPU has it
                compiled = core.compile_model(core.read_model(path), "CPU",
                                              {} if hint == "default" else {"INFERENCE_PRECISION_HINT": hint})
                name = f"openvino_cpu_{compiled.get_property('INFERENCE_PRECISION_HINT').to_string()}"
                runs[name] = _count(lambda x, c=compiled: np.asarray(c(x)[c.output(output)]), context.data)
        report[label] = {"images": len(context.data), "ort_cpu_provider": cpu, **runs}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
