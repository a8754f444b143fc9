"""Decoded-image cache (onnxnoise.data.cache): hits, keys, corrupt entries."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from onnxnoise.data import cache as cache_mod, open_dataset, resolve_data_config
from onnxnoise.data.cache import cache_key, get_cache_dir, load_images_cached


@pytest.fixture
def image_folder(tmp_path):
    """Two classes of three 40x30 PNGs each, one corrupt file."""
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "ds" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(tmp_path / "ds" / cls / f"{i}.png")
    (tmp_path / "ds" / "b" / "bad.png").write_bytes(b"not a png")
    return tmp_path / "ds"


@pytest.fixture
def spy(monkeypatch):
    """Counts calls of the wrapped ``load_images``."""
    calls = []
    real = cache_mod.load_images

    def wrapped(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(cache_mod, "load_images", wrapped)
    return calls


def _config(**kw):
    return resolve_data_config("torchvision", **{"resize": 32, "crop": 24, **kw})


def test_second_load_is_a_hit(image_folder, tmp_path, spy):
    ds = open_dataset(image_folder)
    first = load_images_cached(ds, _config(), cache_dir=tmp_path / "c")
    second = load_images_cached(ds, _config(), cache_dir=tmp_path / "c")
    assert len(spy) == 1
    assert isinstance(second.images, np.memmap) and not second.images.flags.writeable
    np.testing.assert_array_equal(second.images, first.images)
    np.testing.assert_array_equal(second.labels, first.labels)
    np.testing.assert_array_equal(second.indices, first.indices)
    assert [s.path for s in second.skipped] == [s.path for s in first.skipped] and len(first.skipped) == 1
    assert second.images.shape == (6, 24, 24, 3)
    # normalization is not part of the key
    load_images_cached(ds, _config(mean=(0.5, 0.5, 0.5)), cache_dir=tmp_path / "c")
    assert len(spy) == 1


def test_key_changes_with_geometry_and_file_list(image_folder, tmp_path):
    ds = open_dataset(image_folder)
    base = cache_key(ds, _config())
    assert cache_key(ds, _config(crop=20)) != base
    assert cache_key(ds, _config(resize=36)) != base
    assert cache_key(ds, _config(interpolation="bicubic")) != base
    assert cache_key(ds, _config(channel_order="BGR")) != base
    assert cache_key(ds.subset(np.arange(5)), _config()) != base
    assert cache_key(open_dataset(image_folder), _config()) == base
    (image_folder / "a" / "3.png").write_bytes((image_folder / "a" / "0.png").read_bytes())
    assert cache_key(open_dataset(image_folder), _config()) != base


@pytest.mark.parametrize("damage", ["truncate", "delete", "garbage-json"])
def test_corrupt_entry_is_rebuilt(image_folder, tmp_path, spy, damage):
    ds = open_dataset(image_folder)
    first = load_images_cached(ds, _config(), cache_dir=tmp_path / "c")
    entry = tmp_path / "c" / cache_key(ds, _config())
    if damage == "truncate":
        data = (entry / "images.npy").read_bytes()
        (entry / "images.npy").write_bytes(data[: len(data) // 2])
    elif damage == "delete":
        (entry / "labels.npz").unlink()
    else:
        (entry / "info.json").write_text("{")
    again = load_images_cached(ds, _config(), cache_dir=tmp_path / "c")
    assert len(spy) == 2
    np.testing.assert_array_equal(again.images, first.images)
    third = load_images_cached(ds, _config(), cache_dir=tmp_path / "c")
    assert len(spy) == 2 and isinstance(third.images, np.memmap)


def test_strict_hit_with_skipped_files_raises(image_folder, tmp_path):
    from onnxnoise.errors import DataError

    ds = open_dataset(image_folder)
    load_images_cached(ds, _config(), cache_dir=tmp_path / "c")
    with pytest.raises(DataError, match="bad.png"):
        load_images_cached(ds, _config(), cache_dir=tmp_path / "c", strict=True)


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ONNXNOISE_CACHE_DIR", str(tmp_path / "env"))
    assert get_cache_dir() == tmp_path / "env"
    assert get_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("ONNXNOISE_CACHE_DIR")
    assert get_cache_dir().parts[-2:] == (".cache", "onnxnoise")


def test_imagenette_hit_returns_every_decoded_pixel_without_decoding(shared_data, tmp_path, monkeypatch):
    """A hit gives the decoded images bit for bit (every pixel compared) and decodes nothing.

    Speed is measured by ``scripts/bench_throughput.py`` (cache rounds reading every pixel), not here:
    what a test can assert is that a hit skips every decode and changes no pixel.
    """
    from onnxnoise.data import load_images
    from onnxnoise.data import loading

    decoded = []
    real_decode = loading.decode_image

    def counting_decode(path, config):
        decoded.append(path)
        return real_decode(path, config)

    monkeypatch.setattr(loading, "decode_image", counting_decode)
    root = shared_data("imagenette-val500")
    ds = open_dataset(root, limit=100)
    config = resolve_data_config("tf-lite")
    first = load_images_cached(ds, config, cache_dir=tmp_path)
    assert len(decoded) == 100 and not first.skipped
    second = load_images_cached(ds, config, cache_dir=tmp_path)
    assert len(decoded) == 100  # the hit decoded nothing: 100 decodes avoided
    assert isinstance(second.images, np.memmap) and second.images.shape == (100, 224, 224, 3)
    reference = load_images(ds, config)  # decoded again, no cache involved
    assert len(decoded) == 200
    hit = np.asarray(second.images)
    assert hit.tobytes() == reference.images.tobytes() == first.images.tobytes()  # every pixel
    np.testing.assert_array_equal(second.labels, reference.labels)
