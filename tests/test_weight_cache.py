"""The parsed-weights cache (``w2x.weight_cache``): a cached load is the JSON load bit for bit,
and a changed JSON, a damaged or foreign cache file, or an unwritable cache folder never
gives other weights nor an error."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import model_path, needs_shared
from synth import model_entries, write_model
from w2x import store, weight_cache
from w2x.nn import models


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A fresh cache folder (its ``weights/`` subfolder is returned)."""
    monkeypatch.setenv(store.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(weight_cache.DISABLE_ENV, raising=False)
    return tmp_path / "cache" / "weights"


def _arrays(model) -> dict[str, np.ndarray]:
    """Every array of every layer, by "layer.field"."""
    return {f"{name}.{field}": getattr(layer, field) for name, layer in model.layers.items()
            for field in ("w2d", "wt", "bias") if hasattr(layer, field)}


def assert_bit_equal(a, b):
    assert a.config == b.config and a.path == b.path
    xa, xb = _arrays(a), _arrays(b)
    assert xa.keys() == xb.keys()
    for key in xa:
        assert xa[key].dtype == xb[key].dtype == np.float32 and xa[key].shape == xb[key].shape, key
        assert np.array_equal(xa[key].view(np.uint32), xb[key].view(np.uint32)), key
        assert xa[key].flags.c_contiguous and xb[key].flags.writeable, key


def _from_cache_only(monkeypatch):
    """Make any JSON parse fail the test: the next load must come from the cache."""
    def no_parse(*args):
        raise AssertionError("the JSON was parsed again")
    monkeypatch.setattr(models, "parse_model_json", no_parse)


def _entry(cache: Path) -> Path:
    (entry,) = cache.glob(f"*{weight_cache.SUFFIX}")
    return entry


@pytest.mark.parametrize("arch, channels", [("vgg_7", 1), ("upconv_7", 3)])
def test_cached_load_equals_json_load_bit_for_bit(cache, tmp_path, monkeypatch, arch, channels):
    path = write_model(tmp_path / "m.json", model_entries(arch, channels=channels, seed=7))
    reference = models.load_model(path)
    first = weight_cache.load_model(path)            # parses, writes the cache
    assert_bit_equal(first, reference)
    _from_cache_only(monkeypatch)
    assert_bit_equal(weight_cache.load_model(path), reference)


@needs_shared   # every architecture, RGB and Y, with the released numbers
@pytest.mark.parametrize("rel", [
    "vgg_7/art/scale2.0x_model.json.gz",
    "vgg_7/art_y_chainer/noise1_model.json.gz",
    "upconv_7/photo/scale2.0x_model.json.gz",
    "cunet/art/scale2.0x_model.json.gz",            # upcunet
    "cunet/art/noise0_model.json.gz",
])
def test_cached_real_models_equal_their_json_bit_for_bit(cache, monkeypatch, rel):
    reference = models.load_model(model_path(rel))
    weight_cache.load_model(model_path(rel))
    _from_cache_only(monkeypatch)
    assert_bit_equal(weight_cache.load_model(model_path(rel)), reference)


def test_a_changed_json_is_parsed_again(cache, tmp_path):
    entries = model_entries("vgg_7", seed=1)
    path = write_model(tmp_path / "m.json", entries)
    weight_cache.load_model(path)
    entries[3]["bias"][0] += 0.5
    write_model(tmp_path / "m.json", entries)
    assert_bit_equal(weight_cache.load_model(path), models.load_model(path))
    assert len(list(cache.iterdir())) == 2             # one entry per JSON content


def _damage_payload(entry: Path):
    data = bytearray(entry.read_bytes())
    data[-5] ^= 0x40                                    # a bit of the last bias
    entry.write_bytes(bytes(data))


def _truncate(entry: Path):
    entry.write_bytes(entry.read_bytes()[:-4])


def _empty(entry: Path):
    entry.write_bytes(b"")


def _garbage_header(entry: Path):
    data = entry.read_bytes()
    entry.write_bytes(data[:len(weight_cache.MAGIC) + 4] + b"\xff{not json" + data[40:])


def _other_format(entry: Path):
    entry.write_bytes(entry.read_bytes().replace(b'"format": 1', b'"format": 9', 1))


@pytest.mark.parametrize("damage", [_damage_payload, _truncate, _empty, _garbage_header, _other_format])
def test_a_damaged_cache_file_is_ignored_and_rebuilt(cache, tmp_path, damage):
    path = write_model(tmp_path / "m.json", model_entries("vgg_7", seed=2))
    weight_cache.load_model(path)
    entry = _entry(cache)
    good = entry.read_bytes()
    damage(entry)
    assert_bit_equal(weight_cache.load_model(path), models.load_model(path))
    assert entry.read_bytes() == good                  # rewritten


def test_a_cache_file_of_other_weights_is_not_used(cache, tmp_path):
    """A valid entry of model A under model B's key (its header names A's JSON): B's weights."""
    a = write_model(tmp_path / "a.json", model_entries("vgg_7", seed=3))
    b = write_model(tmp_path / "b.json", model_entries("vgg_7", seed=4))
    weight_cache.load_model(a)
    entry_a = _entry(cache)
    weight_cache.load_model(b)
    entry_b = next(p for p in cache.iterdir() if p != entry_a)
    entry_b.write_bytes(entry_a.read_bytes())
    assert_bit_equal(weight_cache.load_model(b), models.load_model(b))


def test_a_cache_file_that_does_not_fit_the_spec_is_rebuilt(cache, tmp_path):
    """A well-formed entry (right hashes) whose arrays are not the architecture's."""
    path = write_model(tmp_path / "m.json", model_entries("vgg_7", seed=5))
    weight_cache.load_model(path)
    entry = _entry(cache)
    weights = models.parse_model_json(Path(path).read_bytes())
    (w, b), *rest = weights.arrays
    wrong = models.ModelWeights("vgg_7", 3, ((w[:, :, ::-1].reshape(3, 32, 3, 3).copy(), b), *rest))
    weight_cache.write_entry(entry, entry.stem, wrong)
    assert_bit_equal(weight_cache.load_model(path), models.load_model(path))


def test_an_unwritable_cache_folder_means_no_cache(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(store.CACHE_DIR_ENV, str(blocker))   # cache_base()/weights cannot be made
    path = write_model(tmp_path / "m.json", model_entries("vgg_7", seed=6))
    assert_bit_equal(weight_cache.load_model(path), models.load_model(path))
    assert blocker.read_text() == "not a folder"


def test_the_cache_can_be_turned_off(cache, tmp_path, monkeypatch):
    monkeypatch.setenv(weight_cache.DISABLE_ENV, "0")
    path = write_model(tmp_path / "m.json", model_entries("vgg_7", seed=8))
    assert_bit_equal(weight_cache.load_model(path), models.load_model(path))
    assert not cache.exists()


def test_errors_are_the_json_loaders(cache, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        weight_cache.load_model(tmp_path / "nowhere.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"nInputPlane": 3}]))
    with pytest.raises(models.ModelFormatError, match="bad.json"):
        weight_cache.load_model(bad)
    assert not cache.exists() or not list(cache.iterdir())


def test_the_tests_never_touch_the_real_user_cache():
    """conftest points $W2X_CACHE_DIR at a temporary folder for the whole session."""
    import platformdirs
    assert store.cache_base() != Path(platformdirs.user_cache_dir("w2x")).expanduser()
