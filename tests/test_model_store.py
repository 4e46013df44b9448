"""Model lookup: file names, style folders, search order and the not-found message."""

import os
from pathlib import Path

import pytest

from w2x import store as model_store
from w2x.store import (
    ModelNotFoundError,
    find_model,
    list_installed,
    model_filename,
    model_subdir,
    search_dirs,
)

SHARED = Path(os.environ.get("W2X_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")
# Read before the fixture below clears W2X_MODEL_DIR for each test.
WEIGHTS = Path(os.environ.get("W2X_MODEL_DIR") or SHARED / "weights")


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No W2X_MODEL_DIR, and a cache under tmp_path: never the real user cache."""
    monkeypatch.delenv(model_store.MODEL_DIR_ENV, raising=False)
    monkeypatch.setenv(model_store.CACHE_DIR_ENV, str(tmp_path / "cache"))
    return tmp_path


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[]")
    return path


@pytest.mark.parametrize(
    "mode, level, expected",
    [
        ("noise", 0, "noise0_model"),
        ("noise", 3, "noise3_model"),
        ("scale", None, "scale2.0x_model"),
        ("scale", 2, "scale2.0x_model"),  # the level does not matter for scale
        ("noise_scale", 1, "noise1_scale2.0x_model"),
    ],
)
def test_model_filename_matches_original_names(mode, level, expected):
    assert model_filename(mode, level) == expected


@pytest.mark.parametrize("mode, level", [("noise", None), ("noise_scale", 4), ("user", 1)])
def test_model_filename_rejects_bad_mode_or_level(mode, level):
    with pytest.raises(ValueError, match="got"):
        model_filename(mode, level)


@pytest.mark.parametrize(
    "style, mode, expected",
    [
        ("art", "noise", "cunet/art"),
        ("art", "scale", "cunet/art"),
        ("art", "noise_scale", "cunet/art"),
        ("photo", "noise", "vgg_7/photo"),  # upconv_7/photo/noise*_model are symlinks there
        ("photo", "scale", "upconv_7/photo"),
        ("photo", "noise_scale", "upconv_7/photo"),
        ("vgg_7/ukbench", "scale", "vgg_7/ukbench"),
    ],
)
def test_model_subdir_follows_web_server_mapping(style, mode, expected):
    assert model_subdir(style, mode) == expected


@pytest.mark.parametrize("style", ["anime", "vgg_7", "../etc", "a/b/c"])
def test_model_subdir_rejects_unknown_style(style):
    with pytest.raises(ValueError, match="style must be one of"):
        model_subdir(style)


def test_search_dirs_order(monkeypatch, isolated):
    cache = isolated / "cache" / "models"
    assert search_dirs() == [cache]
    monkeypatch.setenv(model_store.MODEL_DIR_ENV, str(isolated / "env"))
    assert search_dirs() == [isolated / "env", cache]
    assert search_dirs(isolated / "mine") == [isolated / "mine"]


def test_find_model_prefers_model_dir_then_env_then_cache(monkeypatch, isolated):
    name = "noise1_scale2.0x_model"
    in_dir = _touch(isolated / "mine" / f"{name}.json")
    in_env = _touch(isolated / "env" / "cunet" / "art" / f"{name}.json")
    in_cache = _touch(isolated / "cache" / "models" / "cunet" / "art" / f"{name}.json")
    monkeypatch.setenv(model_store.MODEL_DIR_ENV, str(isolated / "env"))

    assert find_model(name, model_dir=isolated / "mine") == in_dir
    assert find_model(name) == in_env
    in_env.unlink()
    assert find_model(name) == in_cache


def test_find_model_reads_json_before_json_gz(isolated):
    folder = isolated / "mine"
    gz = _touch(folder / "scale2.0x_model.json.gz")
    assert find_model("scale2.0x_model", model_dir=folder) == gz
    plain = _touch(folder / "scale2.0x_model.json")
    assert find_model("scale2.0x_model", model_dir=folder) == plain


def test_find_model_photo_noise_only_uses_vgg_7(isolated):
    root = isolated / "cache" / "models"
    noise = _touch(root / "vgg_7" / "photo" / "noise2_model.json")
    fused = _touch(root / "upconv_7" / "photo" / "noise2_scale2.0x_model.json")
    assert find_model("noise2_model", style="photo") == noise  # mode inferred from the name
    assert find_model("noise2_model", style="photo", mode="noise") == noise
    assert find_model("noise2_scale2.0x_model", style="photo") == fused


def test_find_model_missing_lists_every_path_tried(monkeypatch, isolated):
    monkeypatch.setenv(model_store.MODEL_DIR_ENV, str(isolated / "env"))
    with pytest.raises(ModelNotFoundError) as info:
        find_model("noise3_model", style="art")
    message = str(info.value)
    for root in (isolated / "env", isolated / "cache" / "models"):
        for suffix in (".json", ".json.gz"):
            assert str(root / "cunet" / "art" / f"noise3_model{suffix}") in message
    assert "w2x models download --style art" in message
    assert "W2X_MODEL_DIR" in message and "--model-dir" in message
    assert isinstance(info.value, FileNotFoundError)


def test_find_model_missing_in_model_dir_has_no_download_hint(isolated):
    with pytest.raises(ModelNotFoundError, match="scale2.0x_model.json.gz") as info:
        find_model("scale2.0x_model", model_dir=isolated / "mine")
    assert "models download" not in str(info.value)


def test_list_installed_walks_roots_in_order(monkeypatch, isolated):
    monkeypatch.setenv(model_store.MODEL_DIR_ENV, str(isolated / "env"))
    env_model = _touch(isolated / "env" / "vgg_7" / "photo" / "noise0_model.json.gz")
    cache = isolated / "cache" / "models"
    cache_model = _touch(cache / "cunet" / "art" / "scale2.0x_model.json")
    _touch(cache / "cunet" / "art" / ".noise1_model.json.abc.part")  # interrupted download
    _touch(cache / "cunet" / "art" / "README.md")

    assert list_installed() == [
        ("vgg_7/photo", "noise0_model", env_model),
        ("cunet/art", "scale2.0x_model", cache_model),
    ]


@pytest.mark.skipif(not (WEIGHTS / "cunet" / "art").is_dir(), reason=f"no weights at {WEIGHTS}")
@pytest.mark.parametrize("style", ["art", "photo"])
@pytest.mark.parametrize("mode", model_store.MODES)
def test_find_model_resolves_every_mode_in_shared_weights(monkeypatch, style, mode):
    monkeypatch.setenv(model_store.MODEL_DIR_ENV, str(WEIGHTS))
    for level in model_store.NOISE_LEVELS:
        path = find_model(model_filename(mode, level), style=style)
        assert path.parent == WEIGHTS / model_subdir(style, mode)
        assert path.name.startswith(model_filename(mode, level) + ".json")


def test_upconv_7_folders_take_noise_only_from_vgg_7():
    """upconv_7/{art,photo}/noise{N}_model are symlinks to vgg_7/<style>/ in the original."""
    assert model_subdir("upconv_7/art", "noise") == "vgg_7/art"
    assert model_subdir("upconv_7/art", "noise_scale") == "upconv_7/art"
    assert model_subdir("cunet/art", "noise") == "cunet/art"
