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


def _top1(model: onnx.ModelProto, batches, labels, output: str, counters=()) -> tuple[float, dict]:
    """Top-1 in percent and each counter output summed over the batches."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names, predicted, sums = [output, *counters], [], dict.fromkeys(counters, 0)
    for feed in batches:
        scores, *values = session.run(names, feed)
        predicted.append(scores.argmax(axis=1))
        for name, value in zip(counters, values):
            sums[name] += int(value)
    return 100.0 * float((np.concatenate(predicted) == labels).mean()), sums


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
    clean, _ = _top1(context.model, batches, labels, output)
    staged8 = insert_stages(context.model, context.selected, eight, cal, seed=0, weights=context.initializers)
    assert len(staged8.counters) == 4 * 20
    onnx.checker.check_model(staged8.model)
    top8, sums = _top1(staged8.model, batches, labels, output, list(staged8.counters))
    totals = staged8.totals(sums)
    # DAC inputs per image: conv1 3*32*32, 7 convs on 16*32*32, 6 on 32*16*16, 5 on 64*8*8, fc 64
    assert totals["dac_values"] == 1000 * (3072 + 7 * 16384 + 6 * 8192 + 5 * 4096 + 64)
    # ADC values per image: each layer's output (one tile each): 7 * 16*32*32, 6 * 32*16*16, 6 * 64*8*8, 10
    assert totals["adc_values"] == 1000 * (7 * 16384 + 6 * 8192 + 6 * 4096 + 10)
    adc4 = insert_stages(context.model, context.selected, TileSettings(dac_bits=8, adc_bits=4), cal, seed=0,
                         weights=context.initializers)
    top4, _ = _top1(adc4.model, batches, labels, output)
    print(f"ResNet20, 1,000 images: clean {clean:.1f}%, 8-bit DAC/ADC {top8:.1f}%, 8-bit DAC + 4-bit ADC {top4:.1f}%;"
          f" counters {totals}")
    assert abs(top8 - clean) < 0.5
    assert top4 < clean - 2.0
