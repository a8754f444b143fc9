"""The stages on a real model: CIFAR-10 ResNet20 (akamaster weights, BN folded) from ../shared.

8-bit DAC and 8-bit ADC, ranges calibrated (max) on the first 500 test images: top-1 on the first
1,000 test images moves by less than 0.5 points against the clean model (issue 23, "Must show");
a 4-bit ADC lowers it measurably (more than 2 points).
"""

import numpy as np
import onnx
import onnxruntime as ort

from onnxnoise.config import RunConfig
from onnxnoise.engine.context import prepare_context
from onnxnoise.tile import TileSettings, calibrate, insert_stages


def _top1(model: onnx.ModelProto, batches, labels, output: str) -> float:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    predicted = np.concatenate([session.run([output], feed)[0].argmax(axis=1) for feed in batches])
    return 100.0 * float((predicted == labels).mean())


def test_resnet20_8bit_io_keeps_top1_and_a_4bit_adc_lowers_it(cifar_resnet_onnx, shared_data):
    context = prepare_context(RunConfig(model=cifar_resnet_onnx(20), data=shared_data("cifar-10-batches-py"),
                                        device="cpu", limit=1000, batch_size=250))
    name, output = context.io.input_name, context.io.output_name
    batches = [{name: x} for x, _ in context.data.batches()]
    labels = context.data.labels
    eight = TileSettings(dac_bits=8, adc_bits=8)
    cal = calibrate(context.model, context.selected, [b[name] for b in batches[:2]], input_name=name,
                    settings=eight, weights=context.initializers)
    assert cal.images == 500 and len(cal.layers) == 20 and cal.dead == ()
    clean = _top1(context.model, batches, labels, output)
    staged8 = insert_stages(context.model, context.selected, eight, cal, seed=0, weights=context.initializers)
    assert len(staged8.counters) == 4 * 20
    top8 = _top1(staged8.model, batches, labels, output)
    adc4 = insert_stages(context.model, context.selected, TileSettings(dac_bits=8, adc_bits=4), cal, seed=0,
                         weights=context.initializers)
    top4 = _top1(adc4.model, batches, labels, output)
    print(f"ResNet20, 1,000 images: clean {clean:.1f}%, 8-bit DAC/ADC {top8:.1f}%, 8-bit DAC + 4-bit ADC {top4:.1f}%")
    assert abs(top8 - clean) < 0.5
    assert top4 < clean - 2.0
