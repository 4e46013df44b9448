#!/usr/bin/env python3
"""Write the models w2x ships into weights/ (stage 0: the weights a fresh clone converts with).

    python3 tools/bundle_weights.py                  # reads ../shared/weights
    python3 tools/bundle_weights.py /path/to/models  # a folder laid out like waifu2x's models/

Reads the original JSON models (``<arch>/<style>/<name>.json[.gz]``, tools/export_model.lua's
layout) and writes, into the repository's ``weights/`` folder, every model that the ``art``
and ``photo`` styles need for every mode and noise level, as ``<arch>/<style>/<name>.json.gz``.
Each file keeps every layer object and field of the original, in the original order; only
the numbers of ``weight`` and ``bias`` are rewritten, each as the shortest decimal that reads
back to the same float32 (the original writes ``%.14g``), and the gzip stream has no name
and mtime 0, so a re-run writes the same bytes.

A style's default model set (w2x.store.STYLES) is bundled where the whole bundle stays
within ``--budget-mb``; otherwise its smaller stand-in (w2x.store.BUNDLE_FALLBACKS), which
is what w2x uses when the default is not installed.
"""
import argparse
import gzip
import io
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from w2x.store import (  # noqa: E402  (after the path fix above)
    BUNDLE_FALLBACKS,
    MODEL_SUFFIXES,
    MODES,
    NOISE_LEVELS,
    STYLES,
    model_filename,
    model_subdir,
)

REPO_WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "weights"
DEFAULT_BUDGET_MB = 50.0  # issue 16: the repository carries at most 50 MB of models
_MB = 1e6
_ARRAY_KEYS = ("weight", "bias")  # export_model.lua: the only float arrays in a layer
_GZIP_LEVEL = 9


def model_files(folder):
    """Paths ``<arch>/<style>/<name>`` (no suffix) a style folder needs for every mode.

    Parameters
    ----------
    folder : str
        ``"<arch>/<style>"``, e.g. ``"upconv_7/art"``; noise-only goes to vgg_7 for upconv_7
        folders as in the original (w2x.store.model_subdir).
    """
    names = (f"{model_subdir(folder, mode)}/{model_filename(mode, n)}"
             for mode in MODES for n in NOISE_LEVELS)
    return list(dict.fromkeys(names))  # ordered de-duplication: scale2.0x is level-free


def shortest_float32_text(values):
    """Each float32 as the shortest decimal that parses (via float64) back to its bits.

    Parameters
    ----------
    values : float32 ndarray, any shape

    Returns
    -------
    ndarray of str, same shape
        NumPy's ``str`` of each float32: the fewest significant digits that identify it
        (Dragon4, ``unique=True``), positional for 1e-4 <= |v| < 1e16, else ``1.5e-05``;
        negative zero stays ``-0.0``.

    Raises
    ------
    ValueError
        On NaN or infinity (JSON has neither).

    Notes
    -----
    Reading the text as float64 and then rounding to float32, as the loaders do, cannot
    differ from rounding it to float32 directly: float64 has more than 2*24+2 bits, so the
    double rounding is exact. The round trip is checked anyway.
    """
    flat = np.ascontiguousarray(values, dtype=np.float32).ravel()
    if not np.isfinite(flat).all():
        raise ValueError("weights must be finite; JSON has no NaN or infinity")
    text = [str(v) for v in flat]
    back = np.fromiter(map(float, text), dtype=np.float64, count=flat.size).astype(np.float32)
    if not np.array_equal(back.view(np.uint32), flat.view(np.uint32)):
        raise AssertionError("a shortest float32 decimal did not read back to its bits")
    return np.array(text, dtype=object).reshape(np.shape(values))


def _array_json(text):
    """Nested JSON list from an ndarray of number strings."""
    if text.ndim == 1:
        return "[" + ",".join(text) + "]"
    return "[" + ",".join(_array_json(part) for part in text) + "]"


def _layer_json(layer):
    fields = []
    for key, value in layer.items():  # the original's key order
        if key in _ARRAY_KEYS:
            encoded = _array_json(shortest_float32_text(np.asarray(value, dtype=np.float32)))
        else:
            encoded = json.dumps(value, separators=(",", ":"))
        fields.append(f"{json.dumps(key)}:{encoded}")
    return "{" + ",".join(fields) + "}"


def compact_model(raw):
    """An original model's JSON text with its numbers written as shortest float32 decimals."""
    layers = json.loads(raw)
    return ("[" + ",".join(_layer_json(layer) for layer in layers) + "]").encode("ascii")


def gzip_bytes(data):
    """gzip with no file name and mtime 0: the same input always gives the same bytes."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=_GZIP_LEVEL,
                       mtime=0) as f:
        f.write(data)
    return buffer.getvalue()


def read_original(source, rel):
    """Bytes of ``<source>/<rel>.json`` or ``.json.gz``, decompressed."""
    for suffix in MODEL_SUFFIXES:
        path = source / (rel + suffix)
        if path.is_file():
            raw = path.read_bytes()
            return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    raise FileNotFoundError(f"{source / rel}.json[.gz] not found; pass the folder that holds "
                            f"the original models laid out as <arch>/<style>/<name>.json[.gz]")


def encode_all(source, rels):
    """``{rel: gzipped compact JSON}`` for every path, in order."""
    return {rel: gzip_bytes(compact_model(read_original(source, rel))) for rel in rels}


def choose_sets(sizes_of, budget_bytes):
    """Which model folder each style bundles.

    Starts from every style's smallest complete set (its stand-in where it has one), then
    upgrades styles, in :data:`STYLES` order, to their default set while the total fits.

    Parameters
    ----------
    sizes_of : callable
        ``sizes_of(folder) -> {rel: bytes}`` for a style folder's files.
    budget_bytes : float

    Returns
    -------
    chosen : dict
        ``{style: folder}``.
    too_large : dict
        ``{style: total bytes}`` for each default set left out, with the total it would make.
    """
    def total(choice):
        files = {}
        for folder in choice.values():
            files.update(sizes_of(folder))
        return sum(files.values())

    chosen = {style: BUNDLE_FALLBACKS.get(style, folder) for style, folder in STYLES.items()}
    if total(chosen) > budget_bytes:
        raise ValueError(f"even the smallest sets {chosen} take {total(chosen) / _MB:.1f} MB, "
                         f"more than the {budget_bytes / _MB:.1f} MB budget")
    too_large = {}
    for style, folder in STYLES.items():
        upgraded = {**chosen, style: folder}
        if total(upgraded) <= budget_bytes:
            chosen = upgraded
        else:
            too_large[style] = total(upgraded)
    return chosen, too_large


def write_bundle(dest, files):
    """Write ``{rel: bytes}`` as ``dest/<rel>.json.gz``, each via a temp file and a rename."""
    for rel, data in files.items():
        path = dest / f"{rel}.json.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?", type=Path, default=DEFAULT_SOURCE,
                        help=f"folder with the original models (default {DEFAULT_SOURCE})")
    parser.add_argument("--dest", type=Path, default=REPO_WEIGHTS,
                        help=f"folder to write into (default {REPO_WEIGHTS})")
    parser.add_argument("--budget-mb", type=float, default=DEFAULT_BUDGET_MB,
                        help="largest total size of the bundle, in MB (10^6 bytes)")
    parser.add_argument("--only", metavar="REL",
                        help="write just this model, e.g. vgg_7/art/noise0_model (for tests)")
    args = parser.parse_args(argv)
    try:
        if args.only is not None:
            write_bundle(args.dest, encode_all(args.source, [args.only]))
            return 0
        encoded = {}

        def sizes_of(folder):
            rels = model_files(folder)
            encoded.update(encode_all(args.source, [r for r in rels if r not in encoded]))
            return {rel: len(encoded[rel]) for rel in rels}

        chosen, too_large = choose_sets(sizes_of, args.budget_mb * _MB)
    except (OSError, ValueError) as e:
        print(f"bundle_weights: error: {e}", file=sys.stderr)
        return 2
    files = {rel: encoded[rel] for folder in chosen.values() for rel in model_files(folder)}
    write_bundle(args.dest, files)
    for rel, data in files.items():
        print(f"{rel}.json.gz\t{len(data)}")
    for style, size in too_large.items():
        print(f"not bundled: {STYLES[style]} (style {style}), which would make the bundle "
              f"{size / _MB:.2f} MB > {args.budget_mb:g} MB")
    print(f"{len(files)} files, {sum(map(len, files.values())) / _MB:.2f} MB; "
          + ", ".join(f"{style}: {folder}" for style, folder in chosen.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
