"""The guide's code links (docs/*.md): every ``[name](../path.py#L123)`` points at an
existing line that is the ``def``/``class`` of ``name``, so a change that moves code fails
here until ``python tools/guide_links.py --fix`` is run; and the fixer itself works."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIN_CODE_LINKS = 30        # the guide walks the code: far fewer links means it lost its way


def _tool():
    spec = importlib.util.spec_from_file_location("guide_links", ROOT / "tools" / "guide_links.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module                    # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


guide_links = _tool()


def test_every_code_link_names_its_def():
    docs = guide_links.guides()
    assert ROOT / "docs" / "how-it-works.md" in docs
    all_links = [link for doc in docs for link in guide_links.links(doc)]
    stale = [f"{link.where()}: {why}" for link in all_links if (why := guide_links.problem(link))]
    assert not stale, "stale guide links; run `python tools/guide_links.py --fix`:\n" + "\n".join(stale)
    assert sum(link.line is not None for link in all_links) >= MIN_CODE_LINKS


def test_a_moved_def_is_caught_and_fixed(tmp_path):
    code = tmp_path / "mod.py"
    code.write_text("import os\n\n\ndef f(x):\n    return x\n\n\nclass C:\n    def g(self):\n        pass\n")
    doc = tmp_path / "guide.md"
    doc.write_text("See [f](mod.py#L4), [`C.g()`](mod.py#L9) and [C](mod.py#L8); [gone](mod.py#L2).\n")
    assert [guide_links.problem(link) for link in guide_links.links(doc)][:3] == [None, None, None]

    code.write_text("import os\nimport re\n\n\ndef f(x):\n    return x\n\n\nclass C:\n    x = 1\n\n    def g(self):\n        pass\n")
    problems = [guide_links.problem(link) for link in guide_links.links(doc)]
    assert all(problems), problems                      # every link is stale now
    left = guide_links.fix(doc)
    assert doc.read_text() == "See [f](mod.py#L5), [`C.g()`](mod.py#L12) and [C](mod.py#L9); [gone](mod.py#L2).\n"
    assert len(left) == 1 and "gone" in left[0]          # no def to find: left for a person


def test_a_missing_file_or_heading_is_stale(tmp_path):
    doc = tmp_path / "guide.md"
    doc.write_text("# A title\n[x](nowhere.py#L1) [y](nowhere.md) [web](https://example.org/a#L3)\n"
                   "[up](#a-title) [gone](#no-such-heading) [self](guide.md#a-title)\n")
    assert [bool(guide_links.problem(link)) for link in guide_links.links(doc)] == [True, True, False, True, False]
