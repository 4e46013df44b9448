"""Which files a run converts and where each output goes (CLI stage, planning).

Inputs are files, directories (``recursive``), globs, or a list file of paths, one a line,
as the original's ``-l`` (waifu2x.lua:141-246). Outputs are, per job:

* no ``-o``: ``<dir>/<name>_<mode>.<format>`` beside the input (waifu2x.lua:19-20);
* an ``-o`` with ``%s`` (input name without extension) and/or ``%d`` / ``%04d`` (the job's
  number, from 1; the line number in a list file): the original's templates
  (``format_output``, waifu2x.lua:13-38), below which a directory input's subfolders are
  mirrored;
* an ``-o`` that is a directory (it exists, ends with ``/``, or there are several inputs):
  ``<dir>/<path under the input root>/<name>.<format>``, mirroring the input tree;
* otherwise ``-o`` itself, for one input.

The whole plan is checked before any file is read (``UsageError``): no inputs, an output
that is its input or shared by two inputs, an output folder that cannot be written.
Names follow the original's ``-o`` rules and templates (waifu2x.lua:21-22, :139).
"""
from __future__ import annotations

import glob
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from w2x.io.write import ANIMATION_FORMATS, STILL_FORMATS

IMAGE_SUFFIXES = frozenset(STILL_FORMATS) | frozenset(ANIMATION_FORMATS)
OUTPUT_FORMATS = tuple(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES))
DEFAULT_FORMAT = "png"                        # the original always writes PNG (waifu2x.lua:139)
_GLOB_MAGIC = re.compile(r"[*?[]")
_TEMPLATE = re.compile(r"%s|%(\d*)d")        # Lua's "%%s" and "%%%d*d" patterns (:21-22)
# Errors that fail one file and let the run go on: io's read/write errors (ValueError /
# OSError subclasses), bad shapes, a missing model found late, a tile size that does not
# fit, out of memory for one huge image.


class UsageError(ValueError):
    """A run that cannot start as asked: nothing is read or written (exit code 2)."""


@dataclass(frozen=True)
class Source:
    """An input file, its path under its input root (mirrored under an output directory),
    and whether it was named as a file argument (not found in a directory, glob or list)."""
    path: Path
    rel: Path
    named: bool = False


@dataclass(frozen=True)
class Job:
    """Convert ``src`` into ``dst``; ``number`` is the original's ``%d`` (from 1)."""
    src: Path
    dst: Path
    number: int


# --- which files ------------------------------------------------------------------------------

def expand_inputs(inputs: list[str], *, list_file: str | None = None, recursive: bool = False,
                  exclude: Path | None = None) -> list[Source]:
    """Expand input arguments into files, in order, each with its path under its root.

    Parameters
    ----------
    inputs : paths of files or directories, or glob patterns (``*``, ``?``, ``[..]``,
        ``**`` with ``recursive``)
    list_file : a text file of input paths, one a line (the original's ``-l``,
        waifu2x.lua:214-220); blank lines are skipped, paths are relative to the current
        directory as in the original; listed files are taken as they are, missing or not
    recursive : also scan the subdirectories of directory inputs
    exclude : a directory never scanned (the output directory, when it lies in an input)

    Returns
    -------
    list of Source; a directory contributes its image files (``IMAGE_SUFFIXES``, hidden
    files skipped) sorted by path, ``rel`` being the path under the directory; a glob its
    matching files, ``rel`` under the pattern's fixed leading folders; a file ``rel`` =
    its name.

    Raises
    ------
    UsageError
        A named path that does not exist, a glob or directory with no image, an unreadable
        list file, or no inputs at all.
    """
    sources = []
    if list_file is not None:
        try:
            lines = Path(list_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read the list file {list_file} ({e}); "
                             "give a text file of image paths, one a line") from None
        sources += [Source(Path(s), Path(Path(s).name)) for s in map(str.strip, lines) if s]
    for arg in inputs:
        p = Path(arg)
        if p.is_dir():
            found = _scan(p, recursive, exclude)
            if not found:
                how = "" if recursive else " (add --recursive for its subfolders)"
                raise UsageError(f"no image files in directory {p}{how}")
            sources += found
        elif p.exists():
            sources.append(Source(p, Path(p.name), named=True))
        elif _GLOB_MAGIC.search(arg):
            matches = sorted(Path(m) for m in glob.glob(arg, recursive=recursive))
            files = [m for m in matches if m.is_file()]
            if not files:
                raise UsageError(f"no files match {arg!r}")
            root = _glob_root(arg)
            sources += [Source(m, m.relative_to(root) if m.is_relative_to(root) else Path(m.name))
                        for m in files]
        else:
            raise UsageError(f"{arg}: no such file or directory; check the path")
    if not sources:
        raise UsageError("no input: give -i FILE|DIR|GLOB or -l LIST")
    return sources


def _scan(root: Path, recursive: bool, exclude: Path | None) -> list[Source]:
    skip = None if exclude is None else exclude.resolve()
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        # prune in place: hidden folders, the output folder, and all of them unless recursive
        dirnames[:] = sorted(d for d in dirnames if recursive and not d.startswith(".")
                             and (here / d).resolve() != skip)
        found += [Source(here / f, (here / f).relative_to(root)) for f in filenames
                  if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found, key=lambda s: s.rel.parts)


def _glob_root(pattern: str) -> Path:
    """The leading folders of a glob pattern that contain no wildcard."""
    parts = Path(pattern).parts
    fixed = parts[:next(i for i, p in enumerate(parts) if _GLOB_MAGIC.search(p))]
    return Path(*fixed) if fixed else Path(".")


# --- where each goes --------------------------------------------------------------------------

def format_output(template: str, src: Path, number: int) -> str:
    """Fill the original's ``-o`` template for one input (waifu2x.lua:13-38).

    ``%s`` becomes the input's name without its extension and ``%d`` (or ``%05d``, any
    printf width) the job number; a template with neither is returned as is.

    >>> format_output("out/%s_%03d.png", Path("in/miku.jpg"), 7)
    'out/miku_007.png'
    """
    def fill(m: re.Match) -> str:
        return src.stem if m.group(0) == "%s" else f"%{m.group(1)}d" % number
    return _TEMPLATE.sub(fill, template)


def plan_jobs(sources: list[Source], output: str | None, *, mode: str,
              fmt: str | None = None) -> list[Job]:
    """Pair every input with its output path (rules in the module docstring).

    Parameters
    ----------
    sources : from ``expand_inputs``
    output : the ``-o`` argument, or None
    mode : the pipeline mode, for the default name ``<name>_<mode>``
    fmt : output format (extension without dot) for generated names; default png

    Raises
    ------
    UsageError
        An unknown format or output extension, several inputs into one file name, two
        inputs into one output, or an output that is its input.
    """
    ext = "." + (fmt or DEFAULT_FORMAT).lower().lstrip(".")
    if ext not in IMAGE_SUFFIXES:
        raise UsageError(f"unknown output format {fmt!r}; use one of {', '.join(OUTPUT_FORMATS)}")
    several = len(sources) > 1 or not sources[0].named
    kind = _output_kind(output, several, len(sources))
    jobs = [Job(s.path, _destination(s, n, output, kind, ext, mode), n)
            for n, s in enumerate(sources, start=1)]
    _check_jobs(jobs)
    return jobs


def _output_kind(output: str | None, several: bool, n_sources: int) -> str:
    if output is None:
        return "beside"
    if is_template(output):
        return "template"
    p = Path(output)
    if p.is_dir() or output.endswith(("/", os.sep)):
        return "dir"
    if several and p.suffix.lower() in IMAGE_SUFFIXES:
        raise UsageError(f"{n_sources} inputs cannot all be written to {output}; give -o a "
                         "directory or a template with %s or %d")
    return "dir" if several else "file"


def _destination(s: Source, number: int, output: str | None, kind: str, ext: str,
                 mode: str) -> Path:
    if kind == "beside":
        return s.path.with_name(f"{s.path.stem}_{mode}{ext}")
    if kind == "template":
        filled = Path(format_output(output, s.path, number))
        return filled.parent / s.rel.parent / filled.name              # subfolders mirrored
    if kind == "dir":
        return Path(output) / s.rel.with_suffix(ext)
    return Path(output)


def is_template(output: str) -> bool:
    """True when ``output`` holds ``%s`` or ``%d`` (``%04d``...)."""
    return _TEMPLATE.search(output) is not None


def _check_jobs(jobs: list[Job]) -> None:
    inputs = {os.path.realpath(job.src): job for job in jobs}     # symlinks resolved
    seen: dict[str, Job] = {}
    for job in jobs:
        if job.dst.suffix.lower() not in IMAGE_SUFFIXES:
            raise UsageError(f"{job.dst}: unknown output extension {job.dst.suffix!r}; use "
                             f"one of {', '.join(sorted(IMAGE_SUFFIXES))}")
        key = os.path.realpath(job.dst)
        if key in inputs:
            which = "the input itself" if inputs[key] is job else f"the input {inputs[key].src}"
            raise UsageError(f"output {job.dst} is {which}; choose another -o (outputs "
                             "replace existing files)")
        if key in seen:
            raise UsageError(f"{seen[key].src} and {job.src} would both be written to "
                             f"{job.dst}; use a %s or %d template or separate directories")
        seen[key] = job


def prepare_output_dirs(jobs: list[Job]) -> None:
    """Create every output folder and check that a file can be written in it.

    Raises UsageError naming the first folder that cannot be created or written (one line
    instead of one failure per file).
    """
    for folder in dict.fromkeys(job.dst.parent for job in jobs):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder, prefix=".w2x-probe-"):
                pass
        except OSError as e:
            raise UsageError(f"cannot write to output directory {folder} "
                             f"({e.strerror or e}); choose a writable -o") from None
