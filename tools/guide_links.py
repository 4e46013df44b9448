#!/usr/bin/env python3
"""Check, or fix, the code links of the guide (docs/*.md).

A code link is ``[name](../w2x/reconstruct.py#L157)``: a relative path to a Python file and
a line, where the line must be the ``def``/``class`` line of ``name`` (the link text's last
dotted part, backticks and ``()`` ignored: ``reconstruct.run_net``, `` `Conv2d.__call__` ``).
A link without ``#L`` must name a file or folder that exists, and a ``#heading`` anchor
into a markdown file one of its headings.  tests/test_guide.py fails on any stale
link; after code moves, run

    python tools/guide_links.py --fix       # rewrite the line numbers from the named defs
    python tools/guide_links.py             # list the stale links (exit 1 if any)

``--fix`` only changes line numbers; a link whose name has no def (renamed, deleted) or
more than one is left as it is and listed, to be edited by hand.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
LINK = re.compile(r"\[([^\]\n]+)\]\(([^)\s#]*)(#[^)\s]*)?\)")
LINE_ANCHOR = re.compile(r"#L(\d+)$")
DEF = r"^(\s*)(?:async\s+)?(?:def|class)\s+{}\b"


@dataclass(frozen=True)
class Link:
    doc: Path          # the markdown file
    start: int         # offset of the link's "(" target in the doc's text
    end: int
    text: str          # the link text
    target: str        # the path as written
    line: int | None   # the #L line, if any
    anchor: str = ""   # a heading's slug (``#2-stage-1-preprocessing``) in a markdown target

    @property
    def path(self) -> Path:
        return (self.doc.parent / self.target).resolve() if self.target else self.doc

    @property
    def name(self) -> str:
        """The qualified name the link text gives: `` `Conv2d.__call__()` `` -> Conv2d.__call__."""
        return self.text.strip().strip("`").removesuffix("()").strip()

    def where(self) -> str:
        row = self.doc.read_text(encoding="utf-8").count("\n", 0, self.start) + 1
        doc = self.doc.relative_to(ROOT) if self.doc.is_relative_to(ROOT) else self.doc
        return f"{doc}:{row}: [{self.text}]({self.target}" + \
               (f"#L{self.line})" if self.line else ")")


def links(doc: Path) -> list[Link]:
    """Every relative link of ``doc`` to a file of the repository (web links and in-page
    anchors are not code links)."""
    found = []
    for m in LINK.finditer(doc.read_text(encoding="utf-8")):
        text, target, anchor = m.group(1), m.group(2), m.group(3) or ""
        if re.match(r"^[a-z]+:", target) or not (target or anchor):   # http:, https:, mailto:
            continue
        line = LINE_ANCHOR.match(anchor)
        found.append(Link(doc, m.start(2), m.end(), text, target, int(line.group(1)) if line else None,
                          "" if line else anchor.removeprefix("#")))
    return found


def def_lines(path: Path, qualified: str) -> list[int]:
    """1-based lines of ``def``/``class`` ``qualified`` in ``path``: ``f`` anywhere (top-level
    ones only, when there are some), ``C.f`` a def inside class C's block."""
    lines = path.read_text(encoding="utf-8").splitlines()
    *outer, name = qualified.split(".")
    if not re.fullmatch(r"[A-Za-z_]\w*", name):
        return []
    if not outer:
        hits = [(i + 1, len(m.group(1))) for i, s in enumerate(lines) if (m := re.match(DEF.format(name), s))]
        top = [i for i, indent in hits if indent == 0]
        return top or [i for i, _ in hits]
    for cls_line in def_lines(path, outer[-1]):
        indent = len(lines[cls_line - 1]) - len(lines[cls_line - 1].lstrip())
        hits = []
        for i in range(cls_line, len(lines)):
            s = lines[i]
            if s.strip() and len(s) - len(s.lstrip()) <= indent:  # the class block ended
                break
            if re.match(DEF.format(name), s):
                hits.append(i + 1)
        if hits:
            return hits[:1]
    return []


def problem(link: Link) -> str | None:
    """Why ``link`` is stale, or None when it resolves."""
    path = link.path
    if not path.exists():
        return f"no file {link.target}"
    if link.anchor and path.suffix == ".md" and link.anchor not in slugs(path):
        return f"no heading #{link.anchor} in {path.name}"
    if link.line is None:
        return None
    if not path.is_file():
        return f"{link.target} is a folder; a line link needs a file"
    if path.suffix != ".py":
        return f"line links must point at Python defs, got {link.target}"
    lines = path.read_text(encoding="utf-8").splitlines()
    if not 1 <= link.line <= len(lines):
        return f"{link.target} has {len(lines)} lines, the link says {link.line}"
    if link.line not in def_lines(path, link.name):
        return f"line {link.line} of {link.target} is not the def/class of {link.name}: {lines[link.line - 1].strip()!r}"
    return None


def slugs(doc: Path) -> set[str]:
    """The anchors GitHub gives ``doc``'s headings: lower case, punctuation dropped, spaces
    to hyphens (``## 2. Stage 1: preprocessing`` -> ``2-stage-1-preprocessing``)."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", doc.read_text(encoding="utf-8"), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def fix(doc: Path) -> list[str]:
    """Rewrite ``doc``'s stale line numbers in place; returns what could not be fixed."""
    text = doc.read_text(encoding="utf-8")
    left, pieces, at = [], [], 0
    for link in links(doc):
        if link.line is None or problem(link) is None:
            continue
        found = def_lines(link.path, link.name) if link.path.is_file() and link.path.suffix == ".py" else []
        if len(found) != 1:
            left.append(f"{link.where()}: {len(found)} defs of {link.name}; edit it by hand")
            continue
        pieces += [text[at:link.start], f"{link.target}#L{found[0]})"]
        at = link.end
    if pieces:
        doc.write_text("".join(pieces) + text[at:], encoding="utf-8")
    return left


def guides(folder: Path = DOCS) -> list[Path]:
    return sorted(folder.glob("*.md"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Check (or --fix) the code links of docs/*.md.")
    p.add_argument("--fix", action="store_true", help="rewrite stale line numbers from the named defs")
    p.add_argument("docs", nargs="*", type=Path, help="markdown files (default docs/*.md)")
    args = p.parse_args(argv)
    docs = args.docs or guides()
    if args.fix:
        left = [line for doc in docs for line in fix(doc)]
        for line in left:
            print(line, file=sys.stderr)
    stale = [f"{link.where()}: {why}" for doc in docs for link in links(doc) if (why := problem(link))]
    for line in stale:
        print(line, file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
