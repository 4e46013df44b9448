"""Where model files live: names, style folders, search order (stage 0: finding the weights).

The original keeps one folder per model set, ``models/<arch>/<style>/``, and picks the file
inside it by mode (docs/waifu2x-reference.md §1.8). w2x searches, in order:

1. ``model_dir``, a folder that directly holds the JSON files (the original's ``-model_dir``);
   when it is given nothing else is searched;
2. otherwise the roots ``$W2X_MODEL_DIR``, the user cache
   ``platformdirs.user_cache_dir("w2x")/models`` (``$W2X_CACHE_DIR/models`` when that is set),
   and last the models bundled with w2x (the repository's ``weights/``), all laid out like
   the original's ``models/`` tree: ``<arch>/<style>/<name>.json[.gz]``.

The bundle holds every model of the ``photo`` style but, for ``art``, the smaller
``upconv_7/art`` models instead of ``cunet/art`` (:data:`BUNDLE_FALLBACKS`): where no root
has the default model, :func:`resolve_model` returns the stand-in with a note saying so.
``w2x models download`` (:mod:`w2x.download`) fills the cache.
"""

import importlib.resources
import os
from pathlib import Path
from typing import NamedTuple

# web.lua:54-55: the web server's two styles and the model folder each one loads.
STYLES = {"art": "cunet/art", "photo": "upconv_7/photo"}

# The original's upconv_7/{art,photo}/noise{N}_model files are symlinks to
# ../../vgg_7/<style>/ (reference §1.8): noise-only in those folders runs the vgg_7 models,
# which is how the photo style's noise mode works (web.lua:66-76).
_NOISE_LINKS = {"upconv_7/art": "vgg_7/art", "upconv_7/photo": "vgg_7/photo"}

# The model folder used in place of a style's default where no root has the default: the
# bundle (weights/, at most 50 MB) cannot hold cunet/art: its 9 files take ~49 MB compacted.
BUNDLE_FALLBACKS = {"art": "upconv_7/art"}

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

# weights/ is installed as the package w2x.weights (pyproject.toml package-dir); a checkout
# run with PYTHONPATH=. has no such package, only the folder beside w2x/.
WEIGHTS_PACKAGE = "w2x.weights"
CHECKOUT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
_WEIGHTS_MARKER = "original_blobs.tsv"  # tells w2x's weights/ from any other folder so named


class ModelNotFoundError(FileNotFoundError):
    """No file for the requested model in any searched folder."""


class ModelDirError(NotADirectoryError):
    """``$W2X_MODEL_DIR`` or ``model_dir`` names something that is not a folder."""


class Resolved(NamedTuple):
    """The file :func:`resolve_model` found, and why it is not the one asked for."""

    path: Path
    note: str | None  # :func:`fallback_note` when a stand-in was used, else None


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


def cache_base():
    """w2x's user cache folder: ``platformdirs.user_cache_dir("w2x")``, or
    ``$W2X_CACHE_DIR`` when set (the tests set it, so that they never touch the real cache).
    It holds ``models/`` (:func:`cache_root`) and ``weights/`` (``w2x.weight_cache``); it may
    not exist yet."""
    base = os.environ.get(CACHE_DIR_ENV)
    if not base:
        import platformdirs   # only where $W2X_CACHE_DIR is unset
        base = platformdirs.user_cache_dir("w2x")
    return Path(base).expanduser()


def cache_root():
    """Root of the downloaded models: ``cache_base()/models`` (may not exist yet)."""
    return cache_base() / "models"


def weights_dir():
    """w2x's own ``weights/`` folder: the bundled models and the download table.

    The folder beside this ``w2x/`` package when there is one (a checkout, or an editable
    install), else the installed package ``w2x.weights``. The checkout comes first so that
    code and weights come from the same tree even where another copy of w2x is installed.
    The folder may not exist (a partial install): callers check for the files they need.
    """
    if (CHECKOUT_WEIGHTS / _WEIGHTS_MARKER).is_file():
        return CHECKOUT_WEIGHTS
    try:
        return Path(str(importlib.resources.files(WEIGHTS_PACKAGE)))
    except ModuleNotFoundError:
        return CHECKOUT_WEIGHTS


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
        ``[model_dir]`` when it is given; otherwise the roots ``$W2X_MODEL_DIR`` (if set),
        :func:`cache_root` and :func:`weights_dir` (the bundle), each laid out as
        ``<arch>/<style>/<name>.json[.gz]``.

    Raises
    ------
    ModelDirError
        If ``model_dir`` or ``$W2X_MODEL_DIR`` is given but is not a folder.
    """
    if model_dir is not None:
        folder = Path(model_dir).expanduser()
        if not folder.is_dir():
            raise ModelDirError(
                f"--model-dir {model_dir} is not a folder; give a folder that holds the "
                f"<name>.json[.gz] model files"
            )
        return [folder]
    roots = []
    env = os.environ.get(MODEL_DIR_ENV)
    if env:
        root = Path(env).expanduser()
        if not root.is_dir():
            raise ModelDirError(
                f"{MODEL_DIR_ENV}={env} is not a folder; point it at a folder laid out as "
                f"<arch>/<style>/<name>.json[.gz], or unset it"
            )
        roots.append(root)
    return [*roots, cache_root(), weights_dir()]


def _mode_of(name):
    """The mode whose file is called ``name`` (e.g. "noise2_model" -> "noise"), or None."""
    by_name = {model_filename(m, n): m for m in MODES for n in NOISE_LEVELS}
    return by_name.get(name)


def fallback_note(style):
    """What to tell the user once when a style ran on its stand-in models, or None.

    Parameters
    ----------
    style : str
        A key of :data:`STYLES`; other styles and folders have no stand-in.

    Returns
    -------
    str or None
        E.g. "style art: cunet/art is not installed, so upconv_7/art is used (vgg_7/art for
        noise-only); to get cunet/art, run `w2x models download --style art`".
    """
    if style not in BUNDLE_FALLBACKS:
        return None
    default, stand_in = STYLES[style], BUNDLE_FALLBACKS[style]
    noise_folder = model_subdir(stand_in, "noise")
    noise_part = f" ({noise_folder} for noise-only)" if noise_folder != stand_in else ""
    return (
        f"style {style}: {default} is not installed, so {stand_in} is used{noise_part}; "
        f"to get {default}, run `w2x models download --style {style}`"
    )


def _first_file(folders, name, tried):
    """The first ``<folder>/<name>.json[.gz]`` that exists; appends each path to ``tried``."""
    for folder in folders:
        for suffix in MODEL_SUFFIXES:
            path = folder / (name + suffix)
            tried.append(path)
            if path.is_file():
                return path
    return None


def resolve_model(name, *, style="art", model_dir=None, mode=None):
    """The model file to load for a name and style, and a note if it is a stand-in.

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
        Picks the folder for the upconv_7 noise-only exception; inferred from ``name`` when
        omitted.

    Returns
    -------
    Resolved
        ``(path, note)``: the first existing ``<name>.json`` or ``<name>.json.gz`` in the
        style's folder under each root in :func:`search_dirs` order; where no root has it and
        the style has a stand-in (:data:`BUNDLE_FALLBACKS`), the stand-in's file, with
        ``note = fallback_note(style)``. ``note`` is None otherwise.

    Raises
    ------
    ModelNotFoundError
        Listing every path tried and how to get the files.
    ModelDirError
        If ``model_dir`` or ``$W2X_MODEL_DIR`` is not a folder.

    Notes
    -----
    The original reads ``<model_dir>/<name>_model.t7`` (waifu2x.lua:63-135), defaulting to
    ``./models/cunet/art`` (waifu2x.lua:257); it ships every model, so it has no stand-in.
    """
    roots = search_dirs(model_dir)
    tried = []
    if model_dir is not None:
        path = _first_file(roots, name, tried)
        if path is not None:
            return Resolved(path, None)
        raise ModelNotFoundError(
            f"model {name!r} not found; tried: {', '.join(map(str, tried))}. Give a folder "
            f"(--model-dir) that holds it"
        )
    mode = mode if mode is not None else _mode_of(name)
    path = _first_file([root / model_subdir(style, mode) for root in roots], name, tried)
    if path is not None:
        return Resolved(path, None)
    if style in BUNDLE_FALLBACKS:
        stand_in = model_subdir(BUNDLE_FALLBACKS[style], mode)
        path = _first_file([root / stand_in for root in roots], name, tried)
        if path is not None:
            return Resolved(path, fallback_note(style))
    download_hint = f"run `w2x models download --style {style}`, or " if style in STYLES else ""
    raise ModelNotFoundError(
        f"model {name!r} not found; tried: {', '.join(map(str, tried))}. To get it, "
        f"{download_hint}set {MODEL_DIR_ENV} to a folder laid out as "
        f"<arch>/<style>/<name>.json[.gz], or pass --model-dir with a folder holding the files"
    )


def find_model(name, *, style="art", model_dir=None, mode=None):
    """Path of the model file to load: :func:`resolve_model` without its note."""
    return resolve_model(name, style=style, model_dir=model_dir, mode=mode).path


def list_installed():
    """Every model file under the search roots, for ``w2x models list``.

    Returns
    -------
    list of InstalledModel
        ``(style_dir, name, path)`` per file, roots in search order (the bundle last), each
        root sorted by path. A model present in two roots is listed twice; :func:`find_model`
        uses the first.
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
