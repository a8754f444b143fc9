"""Every built-in noise model's draws, pinned: the same seed gives bit-identical noisy tensors.

Hashes (sha256 over the sorted tensor names, dtypes and bytes of one :func:`draw_noise`) of each
model and parameter set on small built models (float32 CNN with BatchNormalization, float16 copy,
QDQ int8 head), two seeds and two strengths each. A refactor of the noise plug-ins (the device
template, the strength axes) must leave every hash unchanged; a changed hash means trial results
of stored sweeps would no longer be reproducible.
"""

from __future__ import annotations

import hashlib
import threading

import ml_dtypes
import numpy as np
import pytest
from onnx import numpy_helper

import onnxnoise.noise.draw as draw_module
from onnxnoise.model import list_layers
from onnxnoise.noise import CleanStats, NoisePolicies, draw_noise, make_noise_model
from onnxnoise.noise.draw import changed_count

from tests._builders import qdq_matmul, tiny_cnn
from tests._noise_inputs import conv_weight

#: (model, parameters, two strengths)
CASES: list[tuple[str, dict, tuple[float, float]]] = [
    ("gaussian-snr", {}, (10.0, 100.0)),
    ("gaussian-snr", {"scope": "channel"}, (10.0, 3.0)),
    ("gaussian-snr", {"scope": "layer"}, (10.0, 3.0)),
    ("gaussian-global-db", {}, (20.0, 0.0)),
    ("multiplicative", {}, (0.05, 0.2)),
    ("pcm", {}, (0.0, 86400.0)),
    ("pcm", {"compensation": "global"}, (1.0, 31536000.0)),
    ("pcm", {"compensation": "global", "levels": 16, "analog": "all"}, (3600.0, 86400.0)),
    ("pcm", {"programming": False, "read_noise": False}, (3600.0, 86400.0)),
    ("pcm", {"g_max": 10.0, "drift": False}, (3600.0, 0.0)),
    ("stuck-at", {}, (0.01, 0.3)),
    ("stuck-at", {"sa1_fraction": 0.1, "levels": 8, "analog": "all"}, (0.0, 0.1)),
    ("conductance-levels", {}, (16.0, 3.0)),
    ("conductance-levels", {"analog": "all"}, (64.0, 2.0)),
    ("bit-flip", {}, (1e-3, 0.05)),
    ("pcm", {"compensation": "global", "mapping": "channel"}, (60.0, 86400.0)),
    ("gaussian-max", {"scope": "row"}, (0.05, 0.2)),
    ("crosssim", {"error": "proportional", "mapping": "channel"}, (0.05, 0.3)),
]


def _models():
    cnn = tiny_cnn(seed=3)
    half = tiny_cnn(seed=4)
    for init in half.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype == np.float32:
            init.CopyFrom(numpy_helper.from_array(array.astype(np.float16), init.name))
    rng = np.random.default_rng(5)
    qdq = qdq_matmul(rng.integers(-128, 128, (6, 5)).astype(np.int8), rng.uniform(0.01, 0.1, 5),
                     np.zeros(5, np.int8), rng.integers(-500, 500, 5).astype(np.int32), 0.004)
    return {"cnn": cnn, "half": half, "qdq": qdq}


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode() + str(a.dtype).encode() + a.tobytes())
    return h.hexdigest()[:16]


def draw_hashes(shared: bool = False) -> dict[str, str]:
    """``"model params strength seed graph" -> hash`` of every case (``shared``: every draw of a graph
    reuses one :class:`~onnxnoise.noise.CleanStats`, as the trials of a run do)."""
    out = {}
    for graph, proto in _models().items():
        layers = list_layers(proto)
        inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
        stats = CleanStats(inits, layers) if shared else None
        for name, params, strengths in CASES:
            model = make_noise_model(name, params)
            if model.needs_integer_weights and graph != "qdq":
                continue
            for strength in strengths:
                for seed in (0, 7):
                    draw = draw_noise(model, strength, seed, layers, inits, NoisePolicies(), model_layers=layers,
                                      stats=stats)
                    counts = ",".join(str(v) for v in draw.counters().values())
                    key = f"{name} {sorted(params.items())} {strength:g} {seed} {graph}"
                    out[key] = f"{_digest(draw.arrays)} {counts}"
    return out


PINNED: dict[str, str] = {
    'gaussian-snr [] 10 0 cnn': '25afdd7f5cb4a734 0,0,0,0',
    'gaussian-snr [] 10 7 cnn': 'a23b211dbd919a40 0,0,0,0',
    'gaussian-snr [] 100 0 cnn': '5bb619ca8ac71d45 0,0,0,0',
    'gaussian-snr [] 100 7 cnn': '9e014c05f2845365 0,0,0,0',
    "gaussian-snr [('scope', 'channel')] 10 0 cnn": 'a15228efb893b153 0,0,0,0',
    "gaussian-snr [('scope', 'channel')] 10 7 cnn": '2a5c4dfd937b20ef 0,0,0,0',
    "gaussian-snr [('scope', 'channel')] 3 0 cnn": '44f888eb5dad4dcf 0,0,0,0',
    "gaussian-snr [('scope', 'channel')] 3 7 cnn": '0a6c8c607f19bff1 0,0,0,0',
    "gaussian-snr [('scope', 'layer')] 10 0 cnn": '7c8f125ab61e198a 1,0,0,0',
    "gaussian-snr [('scope', 'layer')] 10 7 cnn": '9702dedeb9e000c4 1,0,0,0',
    "gaussian-snr [('scope', 'layer')] 3 0 cnn": '2bed46ef94e7e94a 1,0,0,0',
    "gaussian-snr [('scope', 'layer')] 3 7 cnn": '9bc576aad265bd48 1,0,0,0',
    'gaussian-global-db [] 20 0 cnn': '341b68f487d8f94d 0,0,0,0',
    'gaussian-global-db [] 20 7 cnn': 'f09ca73d3850a284 0,0,0,0',
    'gaussian-global-db [] 0 0 cnn': '2ac9af85d0475b4c 0,0,0,0',
    'gaussian-global-db [] 0 7 cnn': 'ba6f7009e829df22 0,0,0,0',
    'multiplicative [] 0.05 0 cnn': 'baa765eed5e8e827 0,0,0,0',
    'multiplicative [] 0.05 7 cnn': 'd2e8eaf99e81e12e 0,0,0,0',
    'multiplicative [] 0.2 0 cnn': '4b28f12a7ba209f3 0,0,0,0',
    'multiplicative [] 0.2 7 cnn': '8eb678d05fc017c7 0,0,0,0',
    'pcm [] 0 0 cnn': 'df9b98e1f3b0d4a5 0,0,0,0',
    'pcm [] 0 7 cnn': 'c6534da80bb7f289 0,0,0,0',
    'pcm [] 86400 0 cnn': '56259588f9b7fef3 0,0,0,0',
    'pcm [] 86400 7 cnn': 'a669b8fc6f63a4c4 0,0,0,0',
    "pcm [('compensation', 'global')] 1 0 cnn": 'adcb6ed0a4b1b007 0,0,0,0',
    "pcm [('compensation', 'global')] 1 7 cnn": '03c73b1e0dff3945 0,0,0,0',
    "pcm [('compensation', 'global')] 3.1536e+07 0 cnn": '476f4f967c542990 0,0,0,0',
    "pcm [('compensation', 'global')] 3.1536e+07 7 cnn": 'da9b55c627685583 0,0,0,0',
    "pcm [('analog', 'all'), ('compensation', 'global'), ('levels', 16)] 3600 0 cnn": '744682b09fb4afa3 0,0,0,0',
    "pcm [('analog', 'all'), ('compensation', 'global'), ('levels', 16)] 3600 7 cnn": 'aed49621b1303308 0,0,0,0',
    "pcm [('analog', 'all'), ('compensation', 'global'), ('levels', 16)] 86400 0 cnn": '240132ac09faa782 0,0,0,0',
    "pcm [('analog', 'all'), ('compensation', 'global'), ('levels', 16)] 86400 7 cnn": '0ae49064bf896dc4 0,0,0,0',
    "pcm [('programming', False), ('read_noise', False)] 3600 0 cnn": 'c3047df75190a748 0,0,0,0',
    "pcm [('programming', False), ('read_noise', False)] 3600 7 cnn": 'f0db968ccb84ca94 0,0,0,0',
    "pcm [('programming', False), ('read_noise', False)] 86400 0 cnn": '2c124a37b72f2ff4 0,0,0,0',
    "pcm [('programming', False), ('read_noise', False)] 86400 7 cnn": 'f0450831b7008b8b 0,0,0,0',
    "pcm [('drift', False), ('g_max', 10.0)] 3600 0 cnn": '8b1c4c8517c55756 0,0,0,0',
    "pcm [('drift', False), ('g_max', 10.0)] 3600 7 cnn": '363f67f9ab941aae 0,0,0,0',
    "pcm [('drift', False), ('g_max', 10.0)] 0 0 cnn": 'df9b98e1f3b0d4a5 0,0,0,0',
    "pcm [('drift', False), ('g_max', 10.0)] 0 7 cnn": 'f9661b793e31202a 0,0,0,0',
    'stuck-at [] 0.01 0 cnn': 'ab44f282a41bdecc 0,0,0,0',
    'stuck-at [] 0.01 7 cnn': '7e258375ca6ede03 0,0,0,0',
    'stuck-at [] 0.3 0 cnn': '5b6358b47ddc7441 0,0,0,0',
    'stuck-at [] 0.3 7 cnn': '913dd7d510dd00c3 0,0,0,0',
    "stuck-at [('analog', 'all'), ('levels', 8), ('sa1_fraction', 0.1)] 0 0 cnn": '5a71da65462ed661 0,0,0,0',
    "stuck-at [('analog', 'all'), ('levels', 8), ('sa1_fraction', 0.1)] 0 7 cnn": '5a71da65462ed661 0,0,0,0',
    "stuck-at [('analog', 'all'), ('levels', 8), ('sa1_fraction', 0.1)] 0.1 0 cnn": '02c3dd2460dbf414 0,0,0,0',
    "stuck-at [('analog', 'all'), ('levels', 8), ('sa1_fraction', 0.1)] 0.1 7 cnn": 'c8d802ea4aa51576 0,0,0,0',
    'conductance-levels [] 16 0 cnn': '356d8253ef99ab43 0,0,0,0',
    'conductance-levels [] 16 7 cnn': '356d8253ef99ab43 0,0,0,0',
    'conductance-levels [] 3 0 cnn': '8ff2a50cb1dd0561 0,0,0,0',
    'conductance-levels [] 3 7 cnn': '8ff2a50cb1dd0561 0,0,0,0',
    "conductance-levels [('analog', 'all')] 64 0 cnn": 'c9297ce25338b2df 0,0,0,0',
    "conductance-levels [('analog', 'all')] 64 7 cnn": 'c9297ce25338b2df 0,0,0,0',
    "conductance-levels [('analog', 'all')] 2 0 cnn": '1669def7a8541000 0,0,0,0',
    "conductance-levels [('analog', 'all')] 2 7 cnn": '1669def7a8541000 0,0,0,0',
    'gaussian-snr [] 10 0 half': '27e6cb9f51fc40b7 0,0,0,0',
    'gaussian-snr [] 10 7 half': '06be22c8785a754c 0,0,0,0',
    'gaussian-snr [] 100 0 half': '60b34000ef59cdf0 0,0,0,0',
    'gaussian-snr [] 100 7 half': '7a305a7c90eabe87 0,0,0,0',
    "gaussian-snr [('scope', 'channel')] 10 0 half": '54dc8bb92e9e8d6e 0,0,0,0',
    "gaussian-snr [('scope', 'channel')] 10 7 half": '5576edcd39b8e395 0,0,0,0',
    "gaussian-snr [('scope', 'channel')] 3 0 half": '7b2efe5bea0cd8a8 0,0,0,0',
    "gaussian-snr [('scope', 'channel')] 3 7 half": '851d8128e68d9fe5 0,0,0,0',
    "gaussian-snr [('scope', 'layer')] 10 0 half": '038480928b7224f7 1,0,0,0',
    "gaussian-snr [('scope', 'layer')] 10 7 half": '64e14e6e98ee7cd5 1,0,0,0',
    "gaussian-snr [('scope', 'layer')] 3 0 half": 'ef7c63c819f941b5 1,0,0,0',
    "gaussian-snr [('scope', 'layer')] 3 7 half": '8f0294c6318784a8 1,0,0,0',
    'gaussian-global-db [] 20 0 half': '6210202ec0f9a2b7 0,0,0,0',
    'gaussian-global-db [] 20 7 half': '04c085ea251f89e2 0,0,0,0',
    'gaussian-global-db [] 0 0 half': '9f5dfe0acc66e846 0,0,0,0',
    'gaussian-global-db [] 0 7 half': 'c1542d1621258311 0,0,0,0',
    'multiplicative [] 0.05 0 half': '69768b4eb71bb95e 0,0,0,0',
    'multiplicative [] 0.05 7 half': '5f4508556759e208 0,0,0,0',
    'multiplicative [] 0.2 0 half': '3734426fffbc523a 0,0,0,0',
    'multiplicative [] 0.2 7 half': '306eb704f5296c5c 0,0,0,0',
    'pcm [] 0 0 half': '41cb4363fc1ef521 0,0,0,0',
    'pcm [] 0 7 half': '3f642a7418ecae2e 0,0,0,0',
    'pcm [] 86400 0 half': 'c83ae4c5467c0ad1 0,0,0,0',
    'pcm [] 86400 7 half': '3878d8a37e8519bb 0,0,0,0',
    "pcm [('compensation', 'global')] 1 0 half": '28183c48cca7fd94 0,0,0,0',
    "pcm [('compensation', 'global')] 1 7 half": '4473913b43ae49a7 0,0,0,0',
    "pcm [('compensation', 'global')] 3.1536e+07 0 half": '6a9869586584d883 0,0,0,0',
    "pcm [('compensation', 'global')] 3.1536e+07 7 half": '9e4aa6173dc2cc14 0,0,0,0',
    "pcm [('analog', 'all'), ('compensation', 'global'), ('levels', 16)] 3600 0 half": '416d14fa08f57bb3 0,0,0,0',
    "pcm [('analog', 'all'), ('compensation', 'global'), ('levels', 16)] 3600 7 half": '46a28fac3e62f14d 0,0,0,0',
    "pcm [('analog', 'all'), ('compensation', 'global'), ('levels', 16)] 86400 0 half": '401a24591fbebe92 0,0,0,0',
    "pcm [('analog', 'all'), ('compensation', 'global'), ('levels', 16)] 86400 7 half": '4fc45ee0783755ae 0,0,0,0',
    "pcm [('programming', False), ('read_noise', False)] 3600 0 half": '8b3c69c3cf66e523 0,0,0,0',
    "pcm [('programming', False), ('read_noise', False)] 3600 7 half": '4a7798c7d6b7e4ff 0,0,0,0',
    "pcm [('programming', False), ('read_noise', False)] 86400 0 half": '151d7244476d09ca 0,0,0,0',
    "pcm [('programming', False), ('read_noise', False)] 86400 7 half": 'f242b5bf4ca0f062 0,0,0,0',
    "pcm [('drift', False), ('g_max', 10.0)] 3600 0 half": 'aa0c9166baa2a304 0,0,0,0',
    "pcm [('drift', False), ('g_max', 10.0)] 3600 7 half": '84f30537b7fc1c45 0,0,0,0',
    "pcm [('drift', False), ('g_max', 10.0)] 0 0 half": '41cb4363fc1ef521 0,0,0,0',
    "pcm [('drift', False), ('g_max', 10.0)] 0 7 half": '3f642a7418ecae2e 0,0,0,0',
    'stuck-at [] 0.01 0 half': '68262910fb8ef1d0 0,0,0,0',
    'stuck-at [] 0.01 7 half': '3b45e1a99eed059f 0,0,0,0',
    'stuck-at [] 0.3 0 half': 'fc5399ffb4c4680c 0,0,0,0',
    'stuck-at [] 0.3 7 half': '4f2263251e8f6b4a 0,0,0,0',
    "stuck-at [('analog', 'all'), ('levels', 8), ('sa1_fraction', 0.1)] 0 0 half": 'ad1921de26d4c6dc 0,0,0,0',
    "stuck-at [('analog', 'all'), ('levels', 8), ('sa1_fraction', 0.1)] 0 7 half": 'ad1921de26d4c6dc 0,0,0,0',
    "stuck-at [('analog', 'all'), ('levels', 8), ('sa1_fraction', 0.1)] 0.1 0 half": '5daf661bb8dd1ed0 0,0,0,0',
    "stuck-at [('analog', 'all'), ('levels', 8), ('sa1_fraction', 0.1)] 0.1 7 half": 'c661ef227191b648 0,0,0,0',
    'conductance-levels [] 16 0 half': '60c75cbfe60f6541 0,0,0,0',
    'conductance-levels [] 16 7 half': '60c75cbfe60f6541 0,0,0,0',
    'conductance-levels [] 3 0 half': 'd5de108f165ab1a9 0,0,0,0',
    'conductance-levels [] 3 7 half': 'd5de108f165ab1a9 0,0,0,0',
    "conductance-levels [('analog', 'all')] 64 0 half": 'e6ceae85fe9648d5 0,0,0,0',
    "conductance-levels [('analog', 'all')] 64 7 half": 'e6ceae85fe9648d5 0,0,0,0',
    "conductance-levels [('analog', 'all')] 2 0 half": '8c7c2686e2b68091 0,0,0,0',
    "conductance-levels [('analog', 'all')] 2 7 half": '8c7c2686e2b68091 0,0,0,0',
    'gaussian-snr [] 10 0 qdq': '209cba4c3114d6c0 0,0,4,0',
    'gaussian-snr [] 10 7 qdq': 'a4230c05df6b9194 0,0,3,0',
    'gaussian-snr [] 100 0 qdq': '0660a1108ac8a185 0,0,2,0',
    'gaussian-snr [] 100 7 qdq': '1456ee4495e88ce6 0,0,2,0',
    "gaussian-snr [('scope', 'channel')] 10 0 qdq": 'b64e68cc8603e8f2 0,0,3,0',
    "gaussian-snr [('scope', 'channel')] 10 7 qdq": '6bbb44c5d0d1ba57 0,0,4,0',
    "gaussian-snr [('scope', 'channel')] 3 0 qdq": '2a95db6777b5850d 0,0,6,0',
    "gaussian-snr [('scope', 'channel')] 3 7 qdq": '300f9e0bc1afd3d9 0,0,6,0',
    "gaussian-snr [('scope', 'layer')] 10 0 qdq": '7eea05c3f8c2386e 0,0,4,0',
    "gaussian-snr [('scope', 'layer')] 10 7 qdq": '3ad57f7be4414737 0,0,3,0',
    "gaussian-snr [('scope', 'layer')] 3 0 qdq": 'a57a911e7dc77e01 0,0,6,0',
    "gaussian-snr [('scope', 'layer')] 3 7 qdq": '2fe43297f49014eb 0,0,6,0',
    'gaussian-global-db [] 20 0 qdq': '8b048a1a06ed2d29 0,0,4,0',
    'gaussian-global-db [] 20 7 qdq': '7fd341b0331225d2 0,0,3,0',
    'gaussian-global-db [] 0 0 qdq': '7e030aa8094fefb7 0,0,11,0',
    'gaussian-global-db [] 0 7 qdq': '41d7eb363f9620a6 0,0,12,0',
    'multiplicative [] 0.05 0 qdq': 'ceda378e9a12e982 0,0,2,0',
    'multiplicative [] 0.05 7 qdq': '6c06335a4edb171d 0,0,2,0',
    'multiplicative [] 0.2 0 qdq': '49be77ade40f74f4 0,0,3,0',
    'multiplicative [] 0.2 7 qdq': 'a8ef2870d54faf16 0,0,4,0',
    'pcm [] 0 0 qdq': 'ec093f5a690b04f0 0,0,1,0',
    'pcm [] 0 7 qdq': 'c91846d4dc1a51ea 0,0,0,0',
    'pcm [] 86400 0 qdq': 'e3e9340d460091b6 0,0,0,0',
    'pcm [] 86400 7 qdq': '034ad394634e2f26 0,0,0,0',
    "pcm [('compensation', 'global')] 1 0 qdq": '63a9dc43bdeb2d64 0,0,1,0',
    "pcm [('compensation', 'global')] 1 7 qdq": '090c1d026c11d00f 0,0,0,0',
    "pcm [('compensation', 'global')] 3.1536e+07 0 qdq": '63001691877116e7 0,0,5,0',
    "pcm [('compensation', 'global')] 3.1536e+07 7 qdq": '6317a2124584d2e6 0,0,1,0',
    "pcm [('analog', 'all'), ('compensation', 'global'), ('levels', 16)] 3600 0 qdq": '10718947f76e321e 0,0,3,0',
    "pcm [('analog', 'all'), ('compensation', 'global'), ('levels', 16)] 3600 7 qdq": '3dac4fe25ba39c2a 0,0,0,0',
    "pcm [('analog', 'all'), ('compensation', 'global'), ('levels', 16)] 86400 0 qdq": 'ed0b6c5439f5a6fe 0,0,4,0',
    "pcm [('analog', 'all'), ('compensation', 'global'), ('levels', 16)] 86400 7 qdq": '1f48c1f28d40b502 0,0,0,0',
    "pcm [('programming', False), ('read_noise', False)] 3600 0 qdq": '78913e730f349ad6 0,0,0,0',
    "pcm [('programming', False), ('read_noise', False)] 3600 7 qdq": 'f176987f609bed66 0,0,0,0',
    "pcm [('programming', False), ('read_noise', False)] 86400 0 qdq": '6a925a407e5404df 0,0,0,0',
    "pcm [('programming', False), ('read_noise', False)] 86400 7 qdq": '43d25e26e324732a 0,0,0,0',
    "pcm [('drift', False), ('g_max', 10.0)] 3600 0 qdq": '75de198650b4dccd 0,0,1,0',
    "pcm [('drift', False), ('g_max', 10.0)] 3600 7 qdq": '94d60e7523697a6f 0,0,0,0',
    "pcm [('drift', False), ('g_max', 10.0)] 0 0 qdq": 'ec093f5a690b04f0 0,0,1,0',
    "pcm [('drift', False), ('g_max', 10.0)] 0 7 qdq": 'c91846d4dc1a51ea 0,0,0,0',
    'stuck-at [] 0.01 0 qdq': 'a67239be515d3813 0,0,0,0',
    'stuck-at [] 0.01 7 qdq': 'a67239be515d3813 0,0,0,0',
    'stuck-at [] 0.3 0 qdq': 'da23639d414ce87d 0,0,7,0',
    'stuck-at [] 0.3 7 qdq': 'ce846246a7be384c 0,0,6,0',
    "stuck-at [('analog', 'all'), ('levels', 8), ('sa1_fraction', 0.1)] 0 0 qdq": 'e0eb610265aff50c 0,0,2,0',
    "stuck-at [('analog', 'all'), ('levels', 8), ('sa1_fraction', 0.1)] 0 7 qdq": 'e0eb610265aff50c 0,0,2,0',
    "stuck-at [('analog', 'all'), ('levels', 8), ('sa1_fraction', 0.1)] 0.1 0 qdq": '3cfc2b631742bd53 0,0,2,0',
    "stuck-at [('analog', 'all'), ('levels', 8), ('sa1_fraction', 0.1)] 0.1 7 qdq": '35c5b6579936c04b 0,0,2,0',
    'conductance-levels [] 16 0 qdq': '8dbfcb73090eb435 0,0,3,0',
    'conductance-levels [] 16 7 qdq': '8dbfcb73090eb435 0,0,3,0',
    'conductance-levels [] 3 0 qdq': '7f77e659abb6336f 0,0,1,0',
    'conductance-levels [] 3 7 qdq': '7f77e659abb6336f 0,0,1,0',
    "conductance-levels [('analog', 'all')] 64 0 qdq": '575f7a8bfe888d67 0,0,0,0',
    "conductance-levels [('analog', 'all')] 64 7 qdq": '575f7a8bfe888d67 0,0,0,0',
    "conductance-levels [('analog', 'all')] 2 0 qdq": 'e532224d430e3b49 0,0,8,0',
    "conductance-levels [('analog', 'all')] 2 7 qdq": 'e532224d430e3b49 0,0,8,0',
    'bit-flip [] 0.001 0 qdq': '94731a1b9a0f1883 0,0,0,0',
    'bit-flip [] 0.001 7 qdq': 'b78b302e3025de04 0,0,0,0',
    'bit-flip [] 0.05 0 qdq': '743e086a8f4b0338 0,0,0,0',
    'bit-flip [] 0.05 7 qdq': '212ba69c9c6ae3c4 0,0,0,0',
    "pcm [('compensation', 'global'), ('mapping', 'channel')] 60 0 cnn": '1cbde35647b1825e 0,0,0,0',
    "pcm [('compensation', 'global'), ('mapping', 'channel')] 60 7 cnn": 'a6454607cbe4c82f 0,0,0,0',
    "pcm [('compensation', 'global'), ('mapping', 'channel')] 86400 0 cnn": 'f645f61af39609e6 0,0,0,0',
    "pcm [('compensation', 'global'), ('mapping', 'channel')] 86400 7 cnn": '647bb2b7242c967a 0,0,0,0',
    "gaussian-max [('scope', 'row')] 0.05 0 cnn": '47c5a5bf202e495b 0,0,0,0',
    "gaussian-max [('scope', 'row')] 0.05 7 cnn": '4b94cfe2b15346ea 0,0,0,0',
    "gaussian-max [('scope', 'row')] 0.2 0 cnn": '76acf9d9fe6e358b 0,0,0,0',
    "gaussian-max [('scope', 'row')] 0.2 7 cnn": '02579daed3e87b69 0,0,0,0',
    "crosssim [('error', 'proportional'), ('mapping', 'channel')] 0.05 0 cnn": '3ac1d1c0c07090ca 0,0,0,0',
    "crosssim [('error', 'proportional'), ('mapping', 'channel')] 0.05 7 cnn": '2664f1c6b5ead19b 0,0,0,0',
    "crosssim [('error', 'proportional'), ('mapping', 'channel')] 0.3 0 cnn": '4dba54628fa1b009 0,0,0,0',
    "crosssim [('error', 'proportional'), ('mapping', 'channel')] 0.3 7 cnn": 'd6dea1a3d56a6905 0,0,0,0',
    "pcm [('compensation', 'global'), ('mapping', 'channel')] 60 0 half": 'fe53c6d63945fe1b 0,0,0,0',
    "pcm [('compensation', 'global'), ('mapping', 'channel')] 60 7 half": 'fbc76b8cde297f3d 0,0,0,0',
    "pcm [('compensation', 'global'), ('mapping', 'channel')] 86400 0 half": '592a5bc5b94f640d 0,0,0,0',
    "pcm [('compensation', 'global'), ('mapping', 'channel')] 86400 7 half": 'ea1a57e19557f589 0,0,0,0',
    "gaussian-max [('scope', 'row')] 0.05 0 half": '6d3245596c340c2e 0,0,0,0',
    "gaussian-max [('scope', 'row')] 0.05 7 half": '05549641e363bdbc 0,0,0,0',
    "gaussian-max [('scope', 'row')] 0.2 0 half": '6b6c211769413c92 0,0,0,0',
    "gaussian-max [('scope', 'row')] 0.2 7 half": '8d96ddcf7fc8e3f7 0,0,0,0',
    "crosssim [('error', 'proportional'), ('mapping', 'channel')] 0.05 0 half": 'a1468205994389bc 0,0,0,0',
    "crosssim [('error', 'proportional'), ('mapping', 'channel')] 0.05 7 half": 'b19c60995a1d9ca5 0,0,0,0',
    "crosssim [('error', 'proportional'), ('mapping', 'channel')] 0.3 0 half": '8f15f927c67e6490 0,0,0,0',
    "crosssim [('error', 'proportional'), ('mapping', 'channel')] 0.3 7 half": '54575b5bb978aae1 0,0,0,0',
    "pcm [('compensation', 'global'), ('mapping', 'channel')] 60 0 qdq": 'b7291e2647c8f21d 0,0,0,0',
    "pcm [('compensation', 'global'), ('mapping', 'channel')] 60 7 qdq": '3d0ad6c1c5d3bd2c 0,0,0,0',
    "pcm [('compensation', 'global'), ('mapping', 'channel')] 86400 0 qdq": '915ded719479e6aa 0,0,5,0',
    "pcm [('compensation', 'global'), ('mapping', 'channel')] 86400 7 qdq": '298e7d54a40c6cb0 0,0,0,0',
    "gaussian-max [('scope', 'row')] 0.05 0 qdq": '13d824a5b2a11fa9 0,0,3,0',
    "gaussian-max [('scope', 'row')] 0.05 7 qdq": 'ad4dd2a44d23122e 0,0,3,0',
    "gaussian-max [('scope', 'row')] 0.2 0 qdq": 'a93db4f4029b417c 0,0,6,0',
    "gaussian-max [('scope', 'row')] 0.2 7 qdq": '962646df926c08d2 0,0,6,0',
    "crosssim [('error', 'proportional'), ('mapping', 'channel')] 0.05 0 qdq": '1491ae2bd5b903ec 0,0,0,0',
    "crosssim [('error', 'proportional'), ('mapping', 'channel')] 0.05 7 qdq": '6f96bcf76f2f6c43 0,0,0,0',
    "crosssim [('error', 'proportional'), ('mapping', 'channel')] 0.3 0 qdq": 'c7802cbf9acad663 0,0,0,0',
    "crosssim [('error', 'proportional'), ('mapping', 'channel')] 0.3 7 qdq": '816b77ab6dccaa94 0,0,0,0',
}


def test_draws_are_bit_identical_to_the_pinned_ones():
    assert draw_hashes() == PINNED


def test_draws_sharing_the_runs_statistics_are_the_pinned_ones():
    # sigma_w, channel stds, the model's mean square and dequantized values computed by the first
    # draw and reused by every later one (strengths, seeds, models): the same bits.
    assert draw_hashes(shared=True) == PINNED


@pytest.mark.parametrize(("name", "params", "strength"), [
    ("gaussian-snr", {"scope": "channel"}, 10.0), ("gaussian-snr", {"scope": "layer"}, 10.0),
    ("gaussian-global-db", {}, 10.0), ("multiplicative", {}, 0.1), ("pcm", {"compensation": "global"}, 3600.0),
    ("stuck-at", {}, 0.05), ("conductance-levels", {}, 8.0),
])
def test_same_seed_same_draw(name, params, strength):
    layer, inits = conv_weight(np.random.default_rng(21), shape=(16, 8, 3, 3))
    model = make_noise_model(name, params)
    first = draw_noise(model, strength, 5, [layer], inits, model_layers=[layer]).arrays
    again = draw_noise(model, strength, 5, [layer], inits, model_layers=[layer]).arrays
    other = draw_noise(model, strength, 6, [layer], inits, model_layers=[layer]).arrays
    for tensor in inits:
        np.testing.assert_array_equal(first[tensor], again[tensor])
    if name != "conductance-levels":  # deterministic: the seed does not matter
        assert not np.array_equal(first["conv.w"], other["conv.w"])


def test_changed_count_compares_values():
    clean = np.array([0.0, 1.0, np.nan, 2.0, -3.0], np.float32)
    noisy = np.array([-0.0, 1.5, np.nan, np.nan, -3.0], np.float32)
    assert changed_count(noisy, clean) == 2  # -0.0 == 0.0 and NaN == NaN are not changes; 1 -> 1.5, 2 -> NaN are
    assert changed_count(np.array([1, 2, 3], np.int8), np.array([1, 0, 3], np.int8)) == 1
    assert changed_count(clean.astype(np.float16), clean.astype(np.float16)) == 0
    assert changed_count(noisy.astype(ml_dtypes.bfloat16), clean.astype(ml_dtypes.bfloat16)) == 2
    assert changed_count(noisy[[0, 1, 3]], clean[[0, 1, 3]]) == 2  # no NaN in the clean tensor


def test_changed_values_per_noised_layer_the_model_acts_on():
    model = tiny_cnn()
    layers = list_layers(model)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    gauss = draw_noise(make_noise_model("gaussian-snr"), 10.0, 0, layers, inits)
    sizes = {layer.name: sum(inits[n].size for n in layer.tensors) for layer in layers}
    assert gauss.changed_values == sizes == {"conv": 112, "bn": 16, "fc": 50}  # every value moves
    # pcm maps only the weight matrices: BatchNormalization is digital by design, not a key; biases stay exact
    assert draw_noise(make_noise_model("pcm"), 60.0, 0, layers, inits).changed_values == {"conv": 108, "fc": 40}
    # bit-flip acts on integer weights only: a float model has no key at all
    assert draw_noise(make_noise_model("bit-flip"), 0.5, 0, layers, inits).changed_values == {}
    # a strength that changes nothing by definition gives 0 for the layers it would act on
    assert draw_noise(make_noise_model("stuck-at"), 0.0, 0, layers, inits).changed_values == {"conv": 0, "fc": 0}


@pytest.mark.parametrize(("name", "params"), [("gaussian-snr", {}), ("gaussian-snr", {"scope": "channel"}),
                                               ("gaussian-global-db", {})])
def test_parallel_draw_equals_one_tensor_at_a_time(monkeypatch, name, params):
    model = make_noise_model(name, params)
    assert model.parallel_draw
    proto = tiny_cnn(seed=3)
    layers = list_layers(proto)
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    threads = set()
    monkeypatch.setattr(draw_module, "PARALLEL_MIN_ELEMENTS", 0)  # tiny_cnn is below the real threshold
    real = type(model).perturb
    monkeypatch.setattr(type(model), "perturb", lambda *a: threads.add(threading.current_thread().name) or real(*a))
    runs = {}
    for workers in (1, 4):
        monkeypatch.setattr(draw_module, "draw_threads", lambda workers=workers: workers)
        threads.clear()
        runs[workers] = draw_noise(model, 20.0, 7, layers, inits, model_layers=layers)
        assert all(t.startswith("onnxnoise-draw") for t in threads) == (workers > 1)
    one, four = runs[1], runs[4]
    assert _digest(one.arrays) == _digest(four.arrays) and list(one.arrays) == list(four.arrays)
    assert one.counters() == four.counters() and one.changed_values == four.changed_values


def test_small_draws_stay_on_one_thread(monkeypatch):
    model = make_noise_model("gaussian-snr")
    layer, inits = conv_weight(np.random.default_rng(3), shape=(16, 8, 3, 3))  # 1,168 elements, below 2^20
    monkeypatch.setattr(draw_module, "draw_threads", lambda: 4)
    threads = set()
    real = type(model).perturb
    monkeypatch.setattr(type(model), "perturb", lambda *a: threads.add(threading.current_thread().name) or real(*a))
    draw_noise(model, 10.0, 0, [layer], inits, model_layers=[layer])
    assert threads == {threading.current_thread().name}
