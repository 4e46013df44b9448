"""Model lookup: file names, style folders, search order, stand-ins and the messages."""

import os
from pathlib import Path

import pytest

from w2x import store as model_store
from w2x.store import (
    ModelDirError,
    ModelNotFoundError,
    Resolved,
    fallback_note,
    find_model,
    list_installed,
    model_filename,
    model_subdir,
    resolve_model,
    search_dirs,
)

SHARED = Path(os.environ.get("W2X_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")
# Read before the fixture below clears W2X_MODEL_DIR for each test.
WEIGHTS = Path(os.environ.get("W2X_MODEL_DIR") or SHARED / "weights")
REAL_WEIGHTS_DIR = model_store.weights_dir  # before the fixture below replaces it


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No W2X_MODEL_DIR, a cache under tmp_path (never the real user cache), and a bundle
    folder under tmp_path (empty unless a test fills it)."""
    monkeypatch.delenv(model_store.MODEL_DIR_ENV, raising=False)
    monkeypatch.setenv(model_store.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(model_store, "weights_dir", lambda: tmp_path / "bundle")
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
    cache, bundle = isolated / "cache" / "models", isolated / "bundle"
    assert search_dirs() == [cache, bundle]
    (isolated / "env").mkdir()
    monkeypatch.setenv(model_store.MODEL_DIR_ENV, str(isolated / "env"))
    assert search_dirs() == [isolated / "env", cache, bundle]
    (isolated / "mine").mkdir()
    assert search_dirs(isolated / "mine") == [isolated / "mine"]


def test_find_model_prefers_model_dir_then_env_then_cache_then_bundle(monkeypatch, isolated):
    name = "noise1_scale2.0x_model"
    in_dir = _touch(isolated / "mine" / f"{name}.json")
    in_env = _touch(isolated / "env" / "cunet" / "art" / f"{name}.json")
    in_cache = _touch(isolated / "cache" / "models" / "cunet" / "art" / f"{name}.json")
    in_bundle = _touch(isolated / "bundle" / "cunet" / "art" / f"{name}.json.gz")
    monkeypatch.setenv(model_store.MODEL_DIR_ENV, str(isolated / "env"))

    assert find_model(name, model_dir=isolated / "mine") == in_dir
    assert find_model(name) == in_env
    in_env.unlink()
    assert find_model(name) == in_cache
    in_cache.unlink()
    assert find_model(name) == in_bundle


def test_model_dir_env_that_is_not_a_folder_says_so(monkeypatch, isolated):
    missing = isolated / "nowhere"
    monkeypatch.setenv(model_store.MODEL_DIR_ENV, str(missing))
    _touch(isolated / "cache" / "models" / "cunet" / "art" / "scale2.0x_model.json")
    for call in (lambda: find_model("scale2.0x_model"), search_dirs, list_installed):
        with pytest.raises(ModelDirError) as info:
            call()
        message = str(info.value)
        assert message.startswith(f"W2X_MODEL_DIR={missing} is not a folder;")
        assert "unset it" in message and "\n" not in message
        assert isinstance(info.value, NotADirectoryError)  # the CLI's one-line OSError path


def test_model_dir_that_is_not_a_folder_says_so(isolated):
    with pytest.raises(ModelDirError, match=r"^--model-dir .*mine is not a folder; "):
        find_model("scale2.0x_model", model_dir=isolated / "mine")


# --- stand-ins: art runs upconv_7/art where cunet/art is nowhere ----------------------------

def _bundle_art_stand_in(isolated):
    bundle = isolated / "bundle"
    return {
        "noise_scale": _touch(bundle / "upconv_7" / "art" / "noise2_scale2.0x_model.json.gz"),
        "scale": _touch(bundle / "upconv_7" / "art" / "scale2.0x_model.json.gz"),
        "noise": _touch(bundle / "vgg_7" / "art" / "noise2_model.json.gz"),
    }


@pytest.mark.parametrize("mode", model_store.MODES)
def test_art_without_cunet_resolves_to_the_stand_in_with_a_note(isolated, mode):
    expected = _bundle_art_stand_in(isolated)[mode]
    resolved = resolve_model(model_filename(mode, 2), style="art", mode=mode)
    assert resolved == Resolved(expected, fallback_note("art"))
    assert find_model(model_filename(mode, 2), style="art") == expected


def test_art_default_anywhere_beats_the_stand_in(isolated):
    _bundle_art_stand_in(isolated)
    cunet = _touch(isolated / "cache" / "models" / "cunet" / "art" / "noise2_model.json")
    assert resolve_model("noise2_model", style="art") == Resolved(cunet, None)


def test_fallback_note_names_both_models_and_the_download():
    note = fallback_note("art")
    assert note == ("style art: cunet/art is not installed, so upconv_7/art is used (vgg_7/art "
                    "for noise-only); to get cunet/art, run `w2x models download --style art`")
    assert fallback_note("photo") is None and fallback_note("cunet/art") is None


def test_a_named_folder_has_no_stand_in(isolated):
    _bundle_art_stand_in(isolated)
    with pytest.raises(ModelNotFoundError):
        resolve_model("noise2_model", style="cunet/art")
    photo = _touch(isolated / "bundle" / "vgg_7" / "photo" / "noise2_model.json.gz")
    assert resolve_model("noise2_model", style="photo") == Resolved(photo, None)


# --- where weights/ is ---------------------------------------------------------------------

def test_weights_dir_is_the_checkouts_folder_beside_w2x():
    checkout = Path(model_store.__file__).resolve().parents[1] / "weights"
    assert REAL_WEIGHTS_DIR() == checkout
    assert (checkout / "original_blobs.tsv").is_file()


def test_weights_dir_without_a_checkout_folder_is_the_installed_package(monkeypatch, tmp_path):
    import json  # any importable package stands in for an installed w2x.weights

    monkeypatch.setattr(model_store, "CHECKOUT_WEIGHTS", tmp_path / "no-checkout")
    monkeypatch.setattr(model_store, "WEIGHTS_PACKAGE", "json")
    assert REAL_WEIGHTS_DIR() == Path(json.__file__).parent
    monkeypatch.setattr(model_store, "WEIGHTS_PACKAGE", "w2x_no_such_package")
    assert REAL_WEIGHTS_DIR() == tmp_path / "no-checkout"


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
    (isolated / "env").mkdir()
    monkeypatch.setenv(model_store.MODEL_DIR_ENV, str(isolated / "env"))
    with pytest.raises(ModelNotFoundError) as info:
        find_model("noise3_model", style="art")
    message = str(info.value)
    for root in (isolated / "env", isolated / "cache" / "models", isolated / "bundle"):
        for folder in ("cunet/art", "vgg_7/art"):  # the default, then the stand-in
            for suffix in (".json", ".json.gz"):
                assert str(root / folder / f"noise3_model{suffix}") in message
    assert "w2x models download --style art" in message
    assert "W2X_MODEL_DIR" in message and "--model-dir" in message
    assert isinstance(info.value, FileNotFoundError)


def test_find_model_missing_in_model_dir_has_no_download_hint(isolated):
    (isolated / "mine").mkdir()
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
    bundled = _touch(isolated / "bundle" / "upconv_7" / "art" / "scale2.0x_model.json.gz")
    _touch(isolated / "bundle" / "original_blobs.tsv")

    assert list_installed() == [
        ("vgg_7/photo", "noise0_model", env_model),
        ("cunet/art", "scale2.0x_model", cache_model),
        ("upconv_7/art", "scale2.0x_model", bundled),
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
