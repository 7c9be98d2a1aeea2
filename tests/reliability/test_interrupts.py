"""Interrupted merge, release, converters and evaluation: SIGTERM and SIGKILL at several points, then a rerun.

Each case starts from a previous complete output (v1), starts a run that would write v2, signals it
at a deterministic point of the publish rule (killer.fork: the child signals itself there), and checks:
- the output is exactly v1 or exactly v2 (never a mix of the two runs) and its stamp says complete;
- after SIGTERM no staging copy, fallback dir or lock file is left (the handler removed them);
- the rerun, with no hand clean-up, succeeds, writes v2 and leaves no debris (SIGKILL leftovers swept).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from .killer import debris, fork_call

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data_prep"))
from official_fixtures import (  # noqa: E402
    coco_captions,
    gqa_file,
    gqa_question,
    vqa_annotation,
    vqa_annotations,
    vqa_questions,
)

STAMP = "llava_structlora_output.json"
SIGNALS = {"TERM": 143, "KILL": -9}
DIR_POINTS = ["dir-staged", "dir-before-publish", "dir-after-exchange"]


def snapshot(root: Path, skip: tuple[str, ...] = (STAMP,)) -> dict[str, str]:
    """Relative path -> sha256 of every file (the stamp's run info differs between identical runs)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def _check_after_signal(sig: str, rc: int, *folders: Path) -> None:
    assert rc == SIGNALS[sig], rc
    if sig == "TERM":
        assert debris(*folders) == [], "SIGTERM left debris"


# ----------------------------------------------------------------------------- merge and release
@pytest.fixture(scope="module")
def runs(tmp_path_factory, peft_adapter) -> dict[str, Path]:
    """Two adapters of one base (b = a with another lora_B): their merges and releases differ."""
    from safetensors.torch import load_file, save_file

    root = tmp_path_factory.mktemp("runs")
    a, b = root / "run-a", root / "run-b"
    shutil.copytree(peft_adapter, a)
    shutil.copytree(peft_adapter, b)
    tensors = load_file(str(b / "adapter_model.safetensors"))
    save_file({k: v * 3 if "lora_B" in k else v for k, v in tensors.items()}, str(b / "adapter_model.safetensors"))
    return {"a": a, "b": b}


def _merge_argv(run: Path, out: Path, base: Path) -> list[str]:
    return [str(run), str(out), "--base", str(base), "--overwrite"]


@pytest.fixture(scope="module")
def published(tmp_path_factory, runs, tiny_base) -> dict[str, Path]:
    """Reference outputs, uninterrupted: merge and release of run a (v1) and run b (v2)."""
    from llava_structlora.merge import main as merge
    from llava_structlora.release import main as release

    root = tmp_path_factory.mktemp("published")
    out = {}
    for v in ("a", "b"):
        out[f"merge-{v}"] = root / f"merge-{v}"
        assert merge(_merge_argv(runs[v], out[f"merge-{v}"], tiny_base)) == 0
        out[f"release-{v}"] = root / f"release-{v}"
        assert release([str(runs[v]), str(out[f"release-{v}"])]) == 0
    return out


def _interrupt_and_rerun(kind, point, sig, tmp_path, argv, published) -> None:
    from llava_structlora.merge import main as merge
    from llava_structlora.release import main as release
    from llava_structlora.utils.io import verify_output

    main, stamp_kind = (merge, "merged-model") if kind == "merge" else (release, "release")
    v1, v2 = snapshot(published[f"{kind}-a"]), snapshot(published[f"{kind}-b"])
    assert v1 != v2
    work = tmp_path / "work"
    out = work / "out"
    shutil.copytree(published[f"{kind}-a"], out)
    _check_after_signal(sig, fork_call(main, argv(out), signal_at=point, sig=sig), work)
    assert snapshot(out) in (v1, v2), "the output mixes two runs"
    verify_output(out, stamp_kind)  # its stamp lists exactly its files and sizes
    if point in ("dir-staged", f"{kind}-loaded", "merge-saved-weights", "release-adapter-written"):
        assert snapshot(out) == v1  # nothing published before the rename
    assert fork_call(main, argv(out)) == 0  # rerun: no hand clean-up
    assert snapshot(out) == v2 and debris(work) == []
    verify_output(out, stamp_kind)


@pytest.mark.parametrize("sig", sorted(SIGNALS))
@pytest.mark.parametrize("point", ["merge-loaded", "dir-staged", "merge-saved-weights", *DIR_POINTS[1:]])
def test_interrupted_merge(point, sig, tmp_path, runs, tiny_base, published):
    _interrupt_and_rerun("merge", point, sig, tmp_path, lambda out: _merge_argv(runs["b"], out, tiny_base), published)


@pytest.mark.parametrize("sig", sorted(SIGNALS))
@pytest.mark.parametrize("point", ["dir-staged", "release-adapter-written", *DIR_POINTS[1:]])
def test_interrupted_release(point, sig, tmp_path, runs, published):
    argv = lambda out: [str(runs["b"]), str(out), "--overwrite"]  # noqa: E731
    _interrupt_and_rerun("release", point, sig, tmp_path, argv, published)


# ----------------------------------------------------------------------------- converters
def _coco_raw(raw: Path) -> list[str]:
    cap = coco_captions(raw, "train2014", [1, 2, 3])
    val = coco_captions(raw, "val2014", [7, 8, 9])
    return ["--captions", str(cap), str(val), "--images", str(raw / "images")]


def _vqa_raw(raw: Path) -> list[str]:
    qs = [(1, 1, "what?"), (2, 2, "which?"), (3, 3, "how many?")]
    q = vqa_questions(raw, "train2014", qs)
    a = vqa_annotations(
        raw, "train2014", [vqa_annotation(q, i, ans) for q, i, ans in ((1, 1, "red"), (2, 2, "blue"), (3, 3, "two"))]
    )
    return ["--questions", str(q), "--annotations", str(a), "--images", str(raw / "images" / "train2014")]


def _gqa_raw(raw: Path) -> list[str]:
    q = gqa_file(raw, "train", {str(i): gqa_question(f"n{i}", "what?", "red") for i in (1, 2, 3)})
    return ["--questions", str(q), "--images", str(raw / "gqa_images")]


CONVERTERS = {"coco": _coco_raw, "vqav2": _vqa_raw, "gqa": _gqa_raw}


def _converter(task: str):
    import importlib

    return importlib.import_module(f"data_prep.{task}").main


def _task_state(out: Path) -> tuple[dict, dict]:
    """(files other than the manifest, the manifest's counts): what identifies one run's output."""
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest.get("complete") is True
    return snapshot(out, skip=("manifest.json",)), manifest["counts"]


@pytest.mark.parametrize("sig", sorted(SIGNALS))
@pytest.mark.parametrize(
    "point", ["dir-staged", "file-published#1", "file-before-publish#2", "dir-before-publish", "dir-after-exchange"]
)
@pytest.mark.parametrize("task", sorted(CONVERTERS))
def test_interrupted_reconversion(task, point, sig, tmp_path):
    """A re-conversion with other options (v2: --limit 2) killed at each point: the task dir is v1 or v2."""
    base = CONVERTERS[task](tmp_path / "raw")
    out = tmp_path / "data" / task
    main = _converter(task)
    v1 = [*base, "--out", str(out), "--limit", "1"]
    v2 = [*base, "--out", str(out), "--limit", "2"]
    assert main(v1) == 0
    ref1 = _task_state(out)
    ref2_dir = tmp_path / "ref" / task
    assert main([*base, "--out", str(ref2_dir), "--limit", "2"]) == 0
    ref2 = _task_state(ref2_dir)
    assert ref1 != ref2
    _check_after_signal(sig, fork_call(main, v2, signal_at=point, sig=sig), out.parent)
    assert _task_state(out) in (ref1, ref2), "new and old files mixed"
    assert fork_call(main, v2) == 0  # rerun into the same --out: no refusal, no hand deletion
    assert _task_state(out) == ref2 and debris(out.parent) == []


@pytest.mark.parametrize("sig", sorted(SIGNALS))
@pytest.mark.parametrize("point", ["dir-staged", "file-published#2"])
def test_interrupted_first_conversion_reruns(point, sig, tmp_path):
    """The issue's case: a first conversion killed half-way; the rerun is not refused and nothing is left."""
    argv = [*_coco_raw(tmp_path / "raw"), "--out", str(tmp_path / "data" / "coco")]
    main = _converter("coco")
    _check_after_signal(sig, fork_call(main, argv, signal_at=point, sig=sig), tmp_path / "data")
    assert not (tmp_path / "data" / "coco").exists()  # nothing published
    assert fork_call(main, argv) == 0
    assert _task_state(tmp_path / "data" / "coco")[1]["train"] == 6 and debris(tmp_path / "data") == []


# ----------------------------------------------------------------------------- evaluation
def eval_argv(data: Path, base: Path, out: Path, *extra: str) -> list[str]:
    return [
        *("--task", "gqa", "--split", "testdev", "--model", str(base), "--data-root", str(data)),
        *("--output-dir", str(out), "--batch-size", "2", "--max-new-tokens", "2", *extra),
    ]


def _eval_state(out: Path) -> dict:
    keep = ("answers.jsonl", "results.json")
    return {name: (out / name).read_text() for name in keep if (out / name).is_file()}


@pytest.fixture(scope="module")
def reference_eval(tmp_path_factory, eval_world, tiny_base) -> Path:
    from llava_structlora.evaluation.__main__ import main

    out = tmp_path_factory.mktemp("evalref") / "eval"
    torch.manual_seed(0)
    assert main(eval_argv(eval_world, tiny_base, out)) == 0
    return out


@pytest.mark.parametrize("sig", sorted(SIGNALS))
@pytest.mark.parametrize("point", ["file-published#1", "file-published#2", "file-published#3", "file-before-publish#4"])
def test_interrupted_evaluation(point, sig, tmp_path, eval_world, tiny_base, reference_eval):
    """A rerun of a finished evaluation killed while it rewrites its outputs: metrics.json (the stamp) is
    gone until every derived file is rewritten, and the rerun gives the reference answers and scores."""
    from llava_structlora.evaluation.__main__ import main

    out = tmp_path / "evals" / "eval"
    shutil.copytree(reference_eval, out)
    _check_after_signal(
        sig, fork_call(main, eval_argv(eval_world, tiny_base, out), signal_at=point, sig=sig), out.parent
    )
    assert not (out / "metrics.json").exists(), "a half-rewritten evaluation still looks complete"
    assert fork_call(main, eval_argv(eval_world, tiny_base, out)) == 0
    assert _eval_state(out) == _eval_state(reference_eval) and debris(out.parent) == []
    got, want = (json.loads((d / "metrics.json").read_text()) for d in (out, reference_eval))
    assert got["accuracy"] == want["accuracy"] and got["n_questions"] == 3


# ----------------------------------------------------------------------------- the sweep itself
def _stage_name(final: Path, pid: int, start: int) -> Path:
    from llava_structlora.utils.publish import Owner

    return final.parent / f".{final.name}.{pid}-{start}-{Owner.current().host}-0.partial"


def test_leftovers_of_dead_owners_are_swept_and_live_ones_kept(tmp_path):
    """A staging path names its owner: the next write removes it once that process is gone, never before."""
    import subprocess

    from llava_structlora.utils.io import atomic_write_json
    from llava_structlora.utils.publish import _start_ticks

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(done.stdout)
    final = tmp_path / "metrics.json"
    dead = _stage_name(final, dead_pid, 12345)
    reused = _stage_name(final, 1, _start_ticks(1) + 1)  # pid 1 runs, but started at another time: not the owner
    live = _stage_name(final, 1, _start_ticks(1))  # a live process' write in progress
    for p in (dead, reused, live):
        p.write_text("{partial")
    atomic_write_json(final, {"ok": 1})
    assert not dead.exists() and not reused.exists() and live.exists()


def test_legacy_tempfile_leftovers_are_swept_by_the_next_locked_publish(tmp_path, peft_adapter, tiny_base):
    """Leftovers of the earlier mkdtemp naming (``.merged.k3j_9x2a.tmp``, a full copy at 7B) go with the next merge."""
    from llava_structlora.merge import main

    out = tmp_path / "merged"
    legacy = tmp_path / ".merged.k3j_9x2a.tmp"
    legacy.mkdir()
    (legacy / "model.safetensors").write_bytes(b"\0" * 1000)
    assert main(_merge_argv(peft_adapter, out, tiny_base)) == 0
    assert not legacy.exists() and debris(tmp_path) == []
