"""Concurrent runs on one output: the first holds the lock, the second exits 2 naming it, nothing is corrupted.

The first run is a real forked entry point that stops itself (SIGSTOP) at a deterministic point while
it holds the lock; the second runs to its refusal; then the first is continued and must finish a
complete output. Covered: two merges into one OUT, two evaluations into one output dir, two
converters into one task dir, a merge (and a release) of a run dir while training holds it, two
trainings into one OUTPUT_DIR (train entry point and the recipe launcher).
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest

from .conftest import record, write_json
from .killer import debris, fork, fork_call, resume, wait_stopped
from .test_interrupts import _coco_raw, _merge_argv, eval_argv


def _refused(capfd, lock: Path, *needles: str) -> str:
    err = capfd.readouterr().err
    assert "Traceback" not in err, err
    for needle in (str(lock), "is in use by", *needles):
        assert needle in err, f"{needle!r} not in {err!r}"
    return err


def _first_then_second(first, second, point: str):
    """Start `first` (fn, args), stopped at `point` holding its lock; run `second` to its end."""
    proc = fork(first[0], *first[1], signal_at=point, sig="STOP")
    try:
        wait_stopped(proc)
        rc = fork_call(second[0], *second[1])
    except BaseException:
        proc.kill()
        raise
    return proc, rc


def test_two_merges_into_one_out(tmp_path, peft_adapter, tiny_base, capfd):
    from llava_structlora.merge import main
    from llava_structlora.utils.io import verify_output

    out = tmp_path / "merged"
    argv = _merge_argv(peft_adapter, out, tiny_base)
    proc, rc = _first_then_second((main, (argv,)), (main, (argv,)), "merge-loaded")
    assert rc == 2
    _refused(capfd, tmp_path / ".merged.lock", "merge (pid")
    assert resume(proc) == 0
    verify_output(out, "merged-model")
    assert debris(tmp_path) == []


def test_two_evaluations_write_the_same_predictions(tmp_path, eval_world, tiny_base, capfd):
    from llava_structlora.evaluation.__main__ import main

    out = tmp_path / "eval"
    argv = eval_argv(eval_world, tiny_base, out)
    proc, rc = _first_then_second((main, (argv,)), (main, (argv,)), "file-published#1")
    assert rc == 2
    _refused(capfd, tmp_path / ".eval.lock", "evaluation (pid")
    assert resume(proc) == 0
    answers = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    assert [a["question_id"] for a in answers] == ["q0", "q1", "q2"]  # each once, in order: nothing interleaved
    assert json.loads((out / "metrics.json").read_text())["n_questions"] == 3 and debris(tmp_path) == []


def test_two_converters_into_one_task_dir(tmp_path, capfd):
    from data_prep.coco import main

    out = tmp_path / "data" / "coco"
    argv = [*_coco_raw(tmp_path / "raw"), "--out", str(out)]
    proc, rc = _first_then_second((main, (argv,)), (main, (argv,)), "dir-staged")
    assert rc == 2
    _refused(capfd, tmp_path / "data" / ".coco.lock", "coco conversion")
    assert not out.exists()  # the refused run wrote nothing
    assert resume(proc) == 0
    assert json.loads((out / "manifest.json").read_text())["complete"] is True and debris(out.parent) == []


def _train_argv(tmp_path: Path, base: Path, out: Path) -> list[str]:
    data = write_json(tmp_path / "llava_train.json", [record("a", None, "what is it?", "a circle")])
    return [
        *("--model_name_or_path", str(base), "--data_path", str(data), "--output_dir", str(out)),
        *("--report_to", "none", "--max_steps", "1", "--save_steps", "1"),
    ]


@pytest.fixture()
def training(tmp_path, tiny_base):
    """A real training process stopped right after it took the run dir's lock (its identity is written)."""
    from llava_structlora.train.main import main

    out = tmp_path / "outputs" / "run"
    argv = _train_argv(tmp_path, tiny_base, out)
    proc = fork(main, argv, signal_at="file-published#1", sig="STOP")
    wait_stopped(proc)
    assert (out / "run_config.json").is_file()
    yield out, argv
    proc.kill()
    proc.join()


@pytest.mark.parametrize("second", ["merge", "release", "train"])
def test_run_dir_in_use_by_training(second, training, tmp_path, peft_adapter, tiny_base, capfd):
    """A merge / release of a run that trains, or a second training into its OUTPUT_DIR, is refused."""
    from llava_structlora.merge import main as merge
    from llava_structlora.release import main as release
    from llava_structlora.train.main import main as train

    out, argv = training
    shutil.copytree(peft_adapter, out / "adapter")  # what a finished export would look like
    call = {
        "merge": (merge, [str(out), str(tmp_path / "merged"), "--base", str(tiny_base)]),
        "release": (release, [str(out), str(tmp_path / "rel")]),
        "train": (train, argv),
    }[second]
    assert fork_call(call[0], call[1]) == 2
    _refused(capfd, out.parent / ".run.lock", "training run (pid")
    assert not (tmp_path / "merged").exists() and not (tmp_path / "rel").exists()


def test_recipe_refuses_an_output_dir_in_use(tmp_path, capfd):
    """`recipes.finetune` takes OUTPUT_DIR's lock before launching: a second recipe exits 2 and launches nothing."""
    from llava_structlora.utils.locks import output_lock
    from recipes.finetune import main

    out = tmp_path / "run"
    with output_lock(out, "training run"):
        rc = fork_call(main, ["--task", "coco"], SMOKE="1", EVAL="0", OUTPUT_DIR=str(out), NO_DEEPSPEED="1")
    assert rc == 2
    err = _refused(capfd, tmp_path / ".run.lock", "training run (pid")
    assert "[finetune] " in err and not out.exists()


def _hold_and_stop(target: Path) -> None:
    from llava_structlora.utils.locks import output_lock
    from llava_structlora.utils.publish import debug_point

    with output_lock(target, "holder"):
        debug_point("hold")
        signal.pause()


def test_lock_is_released_by_a_killed_holder(tmp_path):
    """The kernel drops a killed process' lock: the next run takes it (and removes the stale lock file)."""
    from llava_structlora.utils.locks import lock_path, output_lock

    target = tmp_path / "out"
    proc = fork(_hold_and_stop, target, signal_at="hold", sig="STOP")
    wait_stopped(proc)
    assert lock_path(target).exists()
    proc.kill()
    proc.join()
    assert lock_path(target).exists()  # left by SIGKILL, but not held
    with output_lock(target, "next run"):
        pass
    assert not lock_path(target).exists()


def test_training_started_during_a_merge_makes_the_merge_refuse(tmp_path, peft_adapter, tiny_base, capfd):
    """The other way round: the merge checks the run again before it publishes, and publishes nothing."""
    from llava_structlora.merge import main as merge
    from llava_structlora.train.main import main as train

    run = tmp_path / "outputs" / "run"
    shutil.copytree(peft_adapter, run / "adapter")
    out = tmp_path / "merged"
    merging = fork(merge, [str(run), str(out), "--base", str(tiny_base)], signal_at="merge-saved-weights", sig="STOP")
    wait_stopped(merging)
    training = fork(train, _train_argv(tmp_path, tiny_base, run), signal_at="file-published#1", sig="STOP")
    try:
        wait_stopped(training)
        assert resume(merging) == 2
        _refused(capfd, run.parent / ".run.lock", "training run (pid")
        assert not out.exists() and debris(tmp_path) == [str(run.parent / ".run.lock")]  # the training's own
    finally:
        training.kill()
        training.join()


def test_two_readers_of_one_finished_run_do_not_block_each_other(tmp_path, peft_adapter, tiny_base):
    """A merge and a release of the same run at the same time both succeed."""
    from llava_structlora.merge import main as merge
    from llava_structlora.release import main as release
    from llava_structlora.utils.io import verify_output

    run = tmp_path / "outputs" / "run"
    shutil.copytree(peft_adapter, run)
    proc, rc = _first_then_second(
        (merge, ([str(run), str(tmp_path / "merged"), "--base", str(tiny_base)],)),
        (release, ([str(run), str(tmp_path / "rel")],)),
        "merge-saved-weights",
    )
    assert rc == 0 and resume(proc) == 0
    verify_output(tmp_path / "merged", "merged-model")
    verify_output(tmp_path / "rel", "release")
