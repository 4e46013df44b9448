"""The models w2x ships in weights/: complete for both styles, exact, small, reproducible."""

import dataclasses
import gzip
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

from w2x import load_model
from w2x import store

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "weights"
BUNDLED = sorted(BUNDLE.glob("*/*/*.json.gz"))
SHARED = Path(os.environ.get("W2X_SHARED") or REPO.parent / "shared")
ORIGINALS = SHARED / "weights"  # the original models the bundle was made from
BUDGET_BYTES = 50e6  # issue 16: the repository carries at most 50 MB of models
needs_originals = pytest.mark.skipif(not ORIGINALS.is_dir(),
                                     reason=f"no original models at {ORIGINALS}")


def _rel(path):
    """``<arch>/<style>/<name>`` of a model file, without suffix."""
    return path.relative_to(path.parents[2]).as_posix().removesuffix(".json.gz")


@pytest.fixture
def bundle_only(monkeypatch, tmp_path):
    """No W2X_MODEL_DIR and an empty cache: the bundle is the only place with models."""
    monkeypatch.delenv(store.MODEL_DIR_ENV, raising=False)
    monkeypatch.setenv(store.CACHE_DIR_ENV, str(tmp_path / "cache"))


def test_the_bundle_is_this_checkouts_weights_folder(bundle_only):
    assert store.weights_dir() == BUNDLE
    assert store.search_dirs()[-1] == BUNDLE


@pytest.mark.parametrize("style", list(store.STYLES))
@pytest.mark.parametrize("mode", store.MODES)
def test_every_mode_and_level_resolves_offline_to_the_bundle(bundle_only, style, mode):
    default = store.STYLES[style]
    stand_in = store.BUNDLE_FALLBACKS.get(style, default)
    for level in store.NOISE_LEVELS:
        name = store.model_filename(mode, level)
        path, note = store.resolve_model(name, style=style, mode=mode)
        assert path == BUNDLE / store.model_subdir(stand_in, mode) / f"{name}.json.gz"
        assert note == (store.fallback_note(style) if stand_in != default else None)


def test_bundle_fits_the_size_budget():
    assert len(BUNDLED) == 18
    assert sum(p.stat().st_size for p in BUNDLED) <= BUDGET_BYTES


def _original_of(rel):
    path = next((ORIGINALS / (rel + s) for s in store.MODEL_SUFFIXES
                 if (ORIGINALS / (rel + s)).is_file()), None)
    assert path is not None, f"no original for {rel} under {ORIGINALS}"
    return path


def _layers_json(path):
    raw = path.read_bytes()
    return json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)


@needs_originals
@pytest.mark.parametrize("rel", ["vgg_7/photo/noise1_model", "upconv_7/art/scale2.0x_model"])
def test_bundled_model_keeps_every_field_of_the_original(rel):
    """One model per architecture: every file goes through the same writer."""
    ours, theirs = _layers_json(BUNDLE / f"{rel}.json.gz"), _layers_json(_original_of(rel))
    assert len(ours) == len(theirs)
    for layer, original in zip(ours, theirs):
        assert list(layer) == list(original)  # same fields, same order
        for key in layer.keys() - {"weight", "bias"}:
            assert layer[key] == original[key]


@needs_originals
@pytest.mark.slow
@pytest.mark.parametrize("path", BUNDLED, ids=_rel)
def test_bundled_model_equals_the_original_value_for_value(path):
    rel = _rel(path)
    bundled, reference = load_model(path), load_model(_original_of(rel))
    assert bundled.config == reference.config
    assert list(bundled.layers) == list(reference.layers)              # the same names, in order
    for name, ours in bundled.layers.items():
        theirs = reference.layers[name]
        assert type(ours) is type(theirs)
        for field in dataclasses.fields(ours):
            value, other = getattr(ours, field.name), getattr(theirs, field.name)
            if isinstance(value, np.ndarray):
                assert value.dtype == other.dtype == np.float32
                # bit for bit: also tells -0.0 from 0.0
                np.testing.assert_array_equal(value.view(np.uint32), other.view(np.uint32),
                                              err_msg=f"{rel} layer {name} {field.name}")
            else:
                assert value == other, f"{rel} layer {name} {field.name}"


def _bundle_tool():
    spec = importlib.util.spec_from_file_location("bundle_weights",
                                                  REPO / "tools" / "bundle_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_originals
@pytest.mark.slow
def test_tool_rewrites_a_model_the_same_way_every_time(tmp_path):
    tool = _bundle_tool()
    rel = "vgg_7/art/noise0_model"
    for run in ("a", "b"):
        assert tool.main([str(ORIGINALS), "--dest", str(tmp_path / run), "--only", rel]) == 0
    first, second = (tmp_path / run / f"{rel}.json.gz" for run in ("a", "b"))
    assert first.read_bytes() == second.read_bytes()
    # the committed file holds the same JSON text (its gzip bytes depend on the zlib build)
    assert gzip.decompress(first.read_bytes()) == gzip.decompress(
        (BUNDLE / f"{rel}.json.gz").read_bytes())


@pytest.mark.parametrize("value, text", [
    (0.1, "0.1"), (-0.0, "-0.0"), (1.0, "1.0"), (1.5e-05, "1.5e-05"),
    (np.float32(0.1) + np.float32(1e-8), "0.10000001"),  # the next float32 above 0.1
])
def test_numbers_are_written_as_the_shortest_float32_decimal(value, text):
    tool = _bundle_tool()
    assert tool.shortest_float32_text(np.array([value], np.float32)).tolist() == [text]


def test_numbers_that_json_cannot_hold_are_refused():
    with pytest.raises(ValueError, match="finite"):
        _bundle_tool().shortest_float32_text(np.array([np.nan], np.float32))


def test_art_run_on_the_bundle_says_once_which_model_it_used(bundle_only, tmp_path, capsys):
    from PIL import Image

    from w2x.cli.main import main as cli_main
    src = tmp_path / "in.png"
    Image.new("RGB", (20, 16), (200, 120, 40)).save(src)
    assert cli_main(["-i", str(src), "-o", str(tmp_path / "out.png"), "--progress", "none"]) == 0
    err = capsys.readouterr().err
    assert err.count(store.fallback_note("art")) == 1
    assert Image.open(tmp_path / "out.png").size == (40, 32)


def test_library_warns_once_when_art_runs_on_the_stand_in(bundle_only):
    import w2x
    with pytest.warns(UserWarning, match="upconv_7/art is used") as caught:
        out = w2x.convert(np.zeros((8, 8, 3), np.uint8))
    assert len(caught) == 1 and out.shape == (16, 16, 3)
