"""Batches on a Dask LocalCluster (w2x.distributed.batch) against the single-process loop.

The reference is ``w2x.cli.batch.run_jobs`` in this process, an independent path to the
same files (no Dask); the cluster is two worker processes, one thread each, shared by the
tests of this file. Inputs are 24 px crops of ../shared/images and the model vgg_7/art on
the numpy backend, so that a file costs milliseconds and the file runs in well under a
minute on 2 cores.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import signal
import time

import numpy as np
import pytest
from PIL import Image
from threadpoolctl import threadpool_limits

from batch_inputs import make_thirty_inputs
from conftest import IMAGES, MODEL_DIR

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
pytestmark = pytest.mark.skipif(not (MODEL_DIR / "vgg_7" / "art").is_dir() or not IMAGES.is_dir(),
                                reason="../shared (weights, images) is absent")

from w2x import pipeline  # noqa: E402
from w2x.anyscale import Target  # noqa: E402
from w2x.cli import batch  # noqa: E402
from w2x.cli import files  # noqa: E402
from w2x.cli.batch import Conversion  # noqa: E402
from w2x.cli.batch import SilentReporter  # noqa: E402
from w2x.cli.progress import JsonReporter, make_reporter  # noqa: E402
from w2x.distributed import cli as dcli  # noqa: E402
from w2x.distributed import cluster, convert_files  # noqa: E402
from w2x.distributed.batch import run_batch  # noqa: E402
from w2x.pipeline import Options  # noqa: E402

# noise_scale with vgg_7/art: a 1x denoise pass, then a 2x pass (plus alpha for the RGBA
# crops), one 48 px tile each.
CONV = Conversion(Options(mode="noise_scale", noise_level=1, style="vgg_7/art",
                          backend="numpy", tile_size=48), Target(2.0))


def _jobs(src, out):
    sources = files.expand_inputs([str(src)], recursive=True, exclude=out)
    jobs = files.plan_jobs(sources, str(out) + "/", mode=CONV.opts.mode)
    files.prepare_output_dirs(jobs)
    return jobs


def _files(root):
    """Every file under root (hidden ones too), relative, sorted."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _pixels(path):
    return np.asarray(Image.open(path))


def _events(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture(scope="module")
def client():
    with cluster.connect("local:2") as c:
        yield c


@pytest.fixture(scope="module")
def plans():
    return pipeline.resolve_plans(CONV.opts)


@pytest.fixture
def inputs(tmp_path):
    src = tmp_path / "in"
    make_thirty_inputs(src)
    return src


# --- the spec ---------------------------------------------------------------------------------

def test_cluster_specs_parse_or_say_what_is_expected(tmp_path):
    assert cluster.parse_spec("local:3") == ("local", 3)
    assert cluster.parse_spec("local")[0] == "local"
    assert cluster.parse_spec("tcp://10.0.0.1:8786") == ("address", "tcp://10.0.0.1:8786")
    f = tmp_path / "scheduler.json"
    f.write_text("{}")
    assert cluster.parse_spec(str(f)) == ("file", str(f))
    with pytest.raises(cluster.ClusterSpecError, match="local:N"):
        cluster.parse_spec(str(tmp_path / "nowhere.json"))
    with pytest.raises(cluster.ClusterSpecError, match="at least one"):
        cluster.parse_spec("local:0")
    assert cluster.worker_environment(2, cores=8)["NUMBA_NUM_THREADS"] == "4"


# --- must show: the 30-file batch -------------------------------------------------------------

def test_thirty_files_two_broken_same_outputs_and_summary_as_one_process(
        client, plans, inputs, tmp_path):
    one, many = tmp_path / "one", tmp_path / "many"
    ref_stream, got_stream = io.StringIO(), io.StringIO()
    with threadpool_limits(1):               # the workers' BLAS threads: the same sums
        ref = batch.run_jobs(_jobs(inputs, one), CONV, JsonReporter(ref_stream), plans=plans)
    got = run_batch(client, _jobs(inputs, many), CONV, JsonReporter(got_stream), plans=plans)

    assert len(ref.written) == 28 and len(ref.failed) == 2
    key = lambda job: job.src                                           # noqa: E731
    assert [key(j) for j in got.written] == [key(j) for j in ref.written]
    assert [(key(j), e) for j, e in got.failed] == [(key(j), e) for j, e in ref.failed]
    assert _files(many) == _files(one)                                  # no temporaries either
    for rel in _files(one):
        assert np.array_equal(_pixels(many / rel), _pixels(one / rel)), rel
    # the same events: a file and a done per input, and the summary
    ref_ev, got_ev = _events(ref_stream), _events(got_stream)
    strip = lambda e: {k: v for k, v in e.items() if k not in ("seconds", "output")}  # noqa: E731
    assert strip(got_ev[-1]) == strip(ref_ev[-1])
    assert sorted(e["event"] for e in got_ev) == sorted(e["event"] for e in ref_ev
                                                          if e["event"] != "tiles")


def test_cli_hook_gives_the_same_exit_status_and_summary_line(client, inputs, tmp_path, capsys):
    out = tmp_path / "cli"
    jobs = _jobs(inputs, out)
    args = argparse.Namespace(cluster=client, files_per_task=3, chunk=None)
    summary = dcli.run_batch(jobs, CONV, make_reporter("none"), "replace", args)
    err = capsys.readouterr().err
    assert "28 written, 0 skipped, 2 failed" in err and "broken_empty.png" in err
    assert len(summary.written) == 28 and len(_files(out)) == 28


def test_cli_arguments_and_a_bad_spec_is_a_usage_error(tmp_path):
    p = argparse.ArgumentParser()
    dcli.add_arguments(p.add_argument_group("cluster"))
    args = p.parse_args(["--cluster", str(tmp_path / "none.json"), "--files-per-task", "4"])
    assert dcli.wanted(args) and args.files_per_task == 4 and args.chunk is None
    with pytest.raises(files.UsageError, match="scheduler file"):
        dcli.run_batch([], CONV, None, "replace", args)
    assert not dcli.wanted(p.parse_args([]))


def test_python_api_convert_files(client, inputs, tmp_path):
    s = convert_files(client, [inputs], tmp_path / "api", CONV, recursive=True)
    assert (len(s.written), len(s.failed)) == (28, 2)
    assert (tmp_path / "api" / "more" / "img03.png").is_file()


# --- must show: worker loss and --resume --------------------------------------------------------

class _KillAWorker(SilentReporter):
    """Kills (SIGKILL) a worker that is processing tasks when the first file is done (or the
    next, if at that moment no worker has a task)."""

    def __init__(self, client):
        self.client, self.killed = client, None

    def end(self, job, outcome):
        if self.killed is not None:
            return
        busy = [w for w, keys in self.client.processing().items() if keys]
        if not busy:          # both between tasks just now (a loaded machine): at the next file
            return
        pids = self.client.run(os.getpid, workers=busy[:1])
        (self.killed,) = pids.values()
        os.kill(self.killed, signal.SIGKILL)


def test_a_worker_killed_mid_batch_costs_no_file_and_leaves_no_partial_file(
        client, plans, inputs, tmp_path):
    one, many = tmp_path / "one", tmp_path / "many"
    with threadpool_limits(1):
        batch.run_jobs(_jobs(inputs, one), CONV, plans=plans)
    killer = _KillAWorker(client)
    got = run_batch(client, _jobs(inputs, many), CONV, killer, plans=plans)

    assert killer.killed is not None
    assert (len(got.written), len(got.failed)) == (28, 2)
    assert _files(many) == _files(one)                                  # no .tmp left
    for rel in _files(one):
        assert np.array_equal(_pixels(many / rel), _pixels(one / rel)), rel
    client.wait_for_workers(2, timeout=60)                              # the nanny restarts it


class _Interrupt(SilentReporter):
    """Raises KeyboardInterrupt (Ctrl-C) once ``after`` files are written (the broken
    inputs' failures do not count: they may end among the first)."""

    def __init__(self, after):
        self.after, self.done = after, 0

    def end(self, job, outcome):
        self.done += outcome.status == "written"
        if self.done == self.after:
            raise KeyboardInterrupt


def test_resume_after_an_interrupted_run_converts_only_what_is_missing(
        client, plans, inputs, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_batch(client, _jobs(inputs, out), CONV, _Interrupt(10), plans=plans)
    _wait_idle(client)
    before = set(_files(out))
    assert 10 <= len(before) < 28 and not any("/." in f or f.startswith(".") for f in before)

    s = run_batch(client, _jobs(inputs, out), CONV, existing="skip", plans=plans)
    skipped = {j.dst.relative_to(out).as_posix() for j in s.skipped}
    assert skipped == before
    assert len(s.written) == 28 - len(before) and len(s.failed) == 2
    assert len(_files(out)) == 28


def _executing(dask_worker) -> int:
    return len(dask_worker.state.executing)


def _wait_idle(client, timeout=30.0):
    """Until no task runs on any worker (a cancelled task's thread finishes its file)."""
    t = time.monotonic()
    while sum(client.run(_executing).values()) and time.monotonic() - t < timeout:
        time.sleep(0.1)
