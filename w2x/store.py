"""Where model files live: names, style folders, search order (stage 0: finding the weights).

The original keeps one folder per model set, ``models/<arch>/<style>/``, and picks the file
inside it by mode (docs/waifu2x-reference.md §1.8). w2x searches, in order:

1. ``model_dir``, a folder that directly holds the JSON files (the original's ``-model_dir``);
   when it is given nothing else is searched;
2. otherwise the roots ``$W2X_MODEL_DIR`` and then the user cache
   ``platformdirs.user_cache_dir("w2x")/models`` (``$W2X_CACHE_DIR/models`` when that is set),
   both laid out like the original's ``models/`` tree: ``<arch>/<style>/<name>.json[.gz]``.

``w2x models download`` (:mod:`w2x.download`) fills the cache.
"""

import os
from pathlib import Path
from typing import NamedTuple

import platformdirs

# web.lua:54-55: the web server's two styles and the model folder each one loads.
STYLES = {"art": "cunet/art", "photo": "upconv_7/photo"}

# The original's upconv_7/{art,photo}/noise{N}_model files are symlinks to
# ../../vgg_7/<style>/ (reference §1.8): noise-only in those folders runs the vgg_7 models,
# which is how the photo style's noise mode works (web.lua:66-76).
_NOISE_LINKS = {"upconv_7/art": "vgg_7/art", "upconv_7/photo": "vgg_7/photo"}

# waifu2x.lua:63-117: the file each mode loads. Only 2x models exist, so `scale%.1fx` is
# always "scale2.0x"; {n} is the noise level.
_FILENAME_FORMATS = {
    "noise": "noise{n}_model",
    "scale": "scale2.0x_model",
    "noise_scale": "noise{n}_scale2.0x_model",
}
MODES = tuple(_FILENAME_FORMATS)
NOISE_LEVELS = (0, 1, 2, 3)  # waifu2x.lua:262 `-noise_level (0|1|2|3)`

# The original ships plain JSON (tools/export_model.lua); gzip copies are read as well.
MODEL_SUFFIXES = (".json", ".json.gz")

MODEL_DIR_ENV = "W2X_MODEL_DIR"
CACHE_DIR_ENV = "W2X_CACHE_DIR"


class ModelNotFoundError(FileNotFoundError):
    """No file for the requested model in any searched folder."""


class InstalledModel(NamedTuple):
    """One model file found by :func:`list_installed`."""

    style_dir: str  # "<arch>/<style>", e.g. "cunet/art"
    name: str  # file name without suffix, e.g. "noise1_scale2.0x_model"
    path: Path


def model_subdir(style, mode=None):
    """Folder ``<arch>/<style>`` that holds the models of a style for a mode.

    Parameters
    ----------
    style : str
        A key of :data:`STYLES` (``"art"``, ``"photo"``) or an ``"<arch>/<style>"`` folder
        such as ``"vgg_7/ukbench"``, which is returned unchanged.
    mode : {"noise", "scale", "noise_scale"} or None
        Only ``"noise"`` changes the answer: noise-only in ``upconv_7/<style>`` (so also the
        photo style) runs ``vgg_7/<style>``.

    Returns
    -------
    str
        E.g. ``model_subdir("photo", "noise") == "vgg_7/photo"``.

    Raises
    ------
    ValueError
        If ``style`` is neither a known style nor an ``<arch>/<style>`` pair.

    Notes
    -----
    Reproduces the model folders of the original web server, web.lua:54-77, including the
    upconv_7/photo/noise*_model -> vgg_7/photo symlinks (reference §1.8).
    """
    folder = STYLES.get(style, style)
    parts = folder.split("/")
    if len(parts) != 2 or any(part in ("", ".", "..") for part in parts):
        raise ValueError(
            f"style must be one of {sorted(STYLES)} or an '<arch>/<style>' folder such as "
            f"'vgg_7/ukbench', got {style!r}"
        )
    return _NOISE_LINKS.get(folder, folder) if mode == "noise" else folder


def model_filename(mode, noise_level=None):
    """File name, without suffix, of the model the original loads for a mode.

    Parameters
    ----------
    mode : {"noise", "scale", "noise_scale"}
    noise_level : {0, 1, 2, 3} or None
        Required for ``"noise"`` and ``"noise_scale"``; ignored for ``"scale"``.

    Returns
    -------
    str
        ``noise{N}_model``, ``scale2.0x_model`` or ``noise{N}_scale2.0x_model``.

    Raises
    ------
    ValueError
        On an unknown mode, or a missing or out-of-range noise level.

    Notes
    -----
    waifu2x.lua:63-117 (``-m noise``, ``-m scale``, ``-m noise_scale``).
    """
    if mode not in _FILENAME_FORMATS:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    if "{n}" in _FILENAME_FORMATS[mode] and noise_level not in NOISE_LEVELS:
        raise ValueError(
            f"mode {mode!r} needs noise_level in {list(NOISE_LEVELS)}, got {noise_level!r}"
        )
    return _FILENAME_FORMATS[mode].format(n=noise_level)


def cache_root():
    """Root of the downloaded models: ``user_cache_dir("w2x")/models``.

    ``$W2X_CACHE_DIR`` replaces ``user_cache_dir("w2x")`` when set (tests use it so that
    they never touch the real cache). The folder may not exist yet.
    """
    base = os.environ.get(CACHE_DIR_ENV) or platformdirs.user_cache_dir("w2x")
    return Path(base).expanduser() / "models"


def search_dirs(model_dir=None):
    """Folders searched for models, in order.

    Parameters
    ----------
    model_dir : str or Path, optional
        A folder that directly holds the model files, like the original's ``-model_dir``
        (waifu2x.lua:257). When given it is the only folder searched.

    Returns
    -------
    list of Path
        ``[model_dir]`` when it is given; otherwise the roots ``$W2X_MODEL_DIR`` (if set)
        and :func:`cache_root`, each laid out as ``<arch>/<style>/<name>.json[.gz]``.
    """
    if model_dir is not None:
        return [Path(model_dir).expanduser()]
    roots = []
    if os.environ.get(MODEL_DIR_ENV):
        roots.append(Path(os.environ[MODEL_DIR_ENV]).expanduser())
    roots.append(cache_root())
    return roots


def _mode_of(name):
    """The mode whose file is called ``name`` (e.g. "noise2_model" -> "noise"), or None."""
    by_name = {model_filename(m, n): m for m in MODES for n in NOISE_LEVELS}
    return by_name.get(name)


def find_model(name, *, style="art", model_dir=None, mode=None):
    """Path of the first existing ``<name>.json`` or ``<name>.json.gz``.

    Parameters
    ----------
    name : str
        File name without suffix, e.g. from :func:`model_filename`.
    style : str
        ``"art"``, ``"photo"`` or an ``"<arch>/<style>"`` folder (see :func:`model_subdir`).
        Ignored when ``model_dir`` is given.
    model_dir : str or Path, optional
        Folder that directly holds the files; searched alone (see :func:`search_dirs`).
    mode : {"noise", "scale", "noise_scale"}, optional
        Picks the folder for the photo noise-only exception; inferred from ``name`` when
        omitted.

    Returns
    -------
    Path

    Raises
    ------
    ModelNotFoundError
        Listing every path tried and how to get the files.

    Notes
    -----
    The original reads ``<model_dir>/<name>_model.t7`` (waifu2x.lua:63-135), defaulting to
    ``./models/cunet/art`` (waifu2x.lua:257).
    """
    if model_dir is not None:
        folders = search_dirs(model_dir)
    else:
        subdir = model_subdir(style, mode if mode is not None else _mode_of(name))
        folders = [root / subdir for root in search_dirs()]
    tried = [folder / (name + suffix) for folder in folders for suffix in MODEL_SUFFIXES]
    for path in tried:
        if path.is_file():
            return path
    downloadable = model_dir is None and style in STYLES
    download_hint = f"run `w2x models download --style {style}`, or " if downloadable else ""
    raise ModelNotFoundError(
        f"model {name!r} not found; tried: {', '.join(map(str, tried))}. To get it, "
        f"{download_hint}set {MODEL_DIR_ENV} to a folder laid out as "
        f"<arch>/<style>/<name>.json[.gz], or pass --model-dir with a folder holding the files"
    )


def list_installed():
    """Every model file under the search roots, for ``w2x models list``.

    Returns
    -------
    list of InstalledModel
        ``(style_dir, name, path)`` per file, roots in search order, each root sorted by
        path. A model present in two roots is listed twice; :func:`find_model` uses the first.
    """
    found = []
    for root in search_dirs():
        for path in sorted(root.glob("*/*/*")):
            suffix = next((s for s in MODEL_SUFFIXES if path.name.endswith(s)), None)
            if suffix is None or not path.is_file():
                continue  # temp files of an interrupted download, READMEs, ...
            style_dir = f"{path.parent.parent.name}/{path.parent.name}"
            found.append(InstalledModel(style_dir, path.name.removesuffix(suffix), path))
    return found
