"""A new user's first minutes: the README's two set-up commands on a fresh clone with nothing
beside it (no ../shared, no models anywhere, no network), and the wheel from any folder.

The clone is made from the committed repository into an empty folder; a virtual
environment reuses the dependencies already installed (``--system-site-packages``), and pip
runs offline (no index, no build isolation, so the installed setuptools builds w2x).  The
commands are read from the README itself, so the test fails when they stop working.
Slow (a few minutes): an editable install, a wheel, and the suite as the clone runs it.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
INNER = "W2X_FRESH_CLONE_INNER"          # set in the clone's own run of the suite: no recursion
OFFLINE = {"PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
SETUPTOOLS_FOR_LICENSE_STRING = (77,)   # pyproject's SPDX ``license = "MIT"`` (PEP 639)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get(INNER) == "1", reason="this is the fresh clone's own run"),
    pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(),
                       reason="needs git and a git checkout to clone"),
]


def readme_setup_commands() -> list[str]:
    """The two commands of the README's "Set-up" code block."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"^## Set-up.*?```sh\n(.*?)```", text, re.S | re.M)
    assert block, "README.md has no '## Set-up' section with a ```sh block"
    commands = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(commands) == 2, commands
    return commands


def _setuptools_version() -> tuple[int, ...]:
    import setuptools
    return tuple(int(p) for p in setuptools.__version__.split(".")[:1])


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """A clone of HEAD in an empty folder and a venv for it; the environment a new user has:
    no W2X_* variables, an empty cache, nothing at ../shared."""
    if _setuptools_version() < SETUPTOOLS_FOR_LICENSE_STRING:
        pytest.skip("the offline build needs setuptools >= 77 installed (pip install -e '.[test]')")
    top = tmp_path_factory.mktemp("fresh")
    clone = top / "w2x"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    assert not (clone.parent / "shared").exists()
    venv = top / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    # the venv's own setuptools is the old one ensurepip bundles: use the installed one
    subprocess.run([venv / "bin" / "python", "-m", "pip", "uninstall", "-y", "-q", "setuptools"], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("W2X_", "PYTEST_", "VIRTUAL_ENV"))}
    env.update(OFFLINE, PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
               W2X_CACHE_DIR=str(top / "cache"), HOME=str(top / "home"))
    return clone, venv, env


def _run(command: str, cwd: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_readme_set_up_works_on_a_fresh_clone_offline(fresh):
    clone, venv, env = fresh
    install_and_upscale, run_tests = readme_setup_commands()

    r = _run(install_and_upscale, clone, env, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    outputs = list(clone.glob("*.png"))
    assert len(outputs) == 1, f"expected one upscaled image in the clone, found {outputs}"
    sample = next(clone.glob("docs/sample.*"))
    with Image.open(sample) as src, Image.open(outputs[0]) as out:
        assert out.size == (2 * src.size[0], 2 * src.size[1])
    assert "upconv_7/art is used" in r.stderr              # the bundled stand-in, said once

    r = _run(run_tests, clone, {**env, INNER: "1"}, timeout=1800)
    tail = r.stdout[-3000:] + r.stderr[-2000:]
    assert r.returncode == 0, tail
    assert re.search(r"\d+ passed", tail) and " failed" not in tail, tail


def test_the_wheel_converts_from_any_folder_with_its_bundled_models(fresh, tmp_path):
    clone, venv, env = fresh
    wheels = tmp_path / "wheels"
    r = _run(f"python -m pip wheel --no-deps -q -w {wheels} {clone}", tmp_path, env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    (wheel,) = wheels.glob("w2x-*.whl")
    target = tmp_path / "site"
    r = _run(f"python -m pip install -q --no-deps --target {target} {wheel}", tmp_path, env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    Image.new("RGB", (24, 20), (30, 160, 220)).save(elsewhere / "in.png")
    # the wheel's w2x first on the path: an editable install's finder runs after the path's
    wheel_env = {**env, "PYTHONPATH": str(target)}
    r = _run("python -m w2x -i in.png -o out.png --style photo -m scale", elsewhere, wheel_env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    with Image.open(elsewhere / "out.png") as out:
        assert out.size == (48, 40)
    import_check = _run("python -c 'import w2x; print(w2x.__file__, w2x.__version__)'", elsewhere,
                        wheel_env, timeout=120)
    assert import_check.stdout.startswith(str(target)), import_check.stdout + import_check.stderr
    assert (target / "w2x" / "py.typed").is_file()
    assert len(list((target / "w2x" / "weights").glob("*/*/*.json.gz"))) == 18


def test_the_sdist_carries_the_tests_and_their_helpers(fresh, tmp_path):
    pytest.importorskip("build", reason="pip install build (in the test extras)")
    clone, venv, env = fresh
    r = _run(f"python -m build --sdist --no-isolation -o {tmp_path} {clone}", tmp_path, env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    (sdist,) = tmp_path.glob("w2x-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for rel in ("tests/conftest.py", "tests/naive.py", "tests/reference_net.py", "tests/synth.py",
                "docs/sample.jpg", "LICENSE", "w2x/py.typed", "kernels/im2col.cu",
                "weights/upconv_7/art/scale2.0x_model.json.gz"):
        assert rel in names, f"{rel} is not in the sdist"
