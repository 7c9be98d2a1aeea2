"""SIGTERM to the recipe launcher reaches every training rank, and the launcher waits for them.

A fake launcher (what deepspeed / torchrun do) starts two "ranks" that write a heartbeat until they
die: one in the recipe's process group (DeepSpeed's), one in a session of its own (torchrun's
ranks); the first ignores SIGTERM (it gets SIGKILL after the grace period). The recipe process
is SIGTERMed from outside; when it has exited no rank may be running.
"""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from .killer import fork

RANK = textwrap.dedent("""
    import os, signal, sys, time
    from pathlib import Path
    if sys.argv[2] == "ignore":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    beat = Path(sys.argv[1])
    while True:
        beat.write_text(str(time.time()))
        time.sleep(0.05)
""")
LAUNCHER = textwrap.dedent("""
    import subprocess, sys, time
    from pathlib import Path
    work = Path(sys.argv[1])
    ranks = [
        subprocess.Popen([sys.executable, str(work / "rank.py"), str(work / "beat0"), "ignore"]),
        subprocess.Popen([sys.executable, str(work / "rank.py"), str(work / "beat1"), "obey"], start_new_session=True),
    ]
    (work / "pids").write_text(" ".join(str(r.pid) for r in ranks))
    for r in ranks:
        r.wait()
""")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _fake_launch(tmp_path: Path) -> list[str]:
    (tmp_path / "rank.py").write_text(RANK)
    (tmp_path / "launcher.py").write_text(LAUNCHER)
    return [sys.executable, str(tmp_path / "launcher.py"), str(tmp_path)]


def _wait_for_ranks(tmp_path: Path, timeout: float = 60.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (tmp_path / "pids").is_file() and all((tmp_path / f"beat{i}").is_file() for i in range(2)):
            return [int(p) for p in (tmp_path / "pids").read_text().split()]
        time.sleep(0.05)
    raise AssertionError("the fake ranks never started")


def _terminate_and_check(proc, pids: list[int], tmp_path: Path) -> None:
    os.kill(proc.pid, signal.SIGTERM)
    proc.join(60)
    assert not proc.is_alive() and proc.exitcode == 128 + signal.SIGTERM
    alive = [p for p in pids if _alive(p)]
    assert alive == [], f"ranks still running after the launcher returned: {alive}"
    beats = [(tmp_path / f"beat{i}").read_text() for i in range(2)]
    time.sleep(0.3)
    assert beats == [(tmp_path / f"beat{i}").read_text() for i in range(2)], "a rank kept writing"


def test_sigterm_reaches_every_rank_and_is_waited_for(tmp_path):
    from llava_structlora.utils.procs import run_launcher

    proc = fork(run_launcher, _fake_launch(tmp_path), None, None, 2.0)
    pids = _wait_for_ranks(tmp_path)
    assert os.getpgid(pids[0]) == os.getpgid(proc.pid)  # still in the recipe's group: `kill -- -PGID` reaches it
    _terminate_and_check(proc, pids, tmp_path)


def _finetune_with_fake_launcher(cmd: list[str]) -> int:
    import llava_structlora.utils.procs as procs
    import recipes.finetune as finetune

    finetune.launch_command = lambda argv, ranks, deepspeed=True: (cmd, dict(os.environ))
    procs.GRACE_S = 2.0  # before the SIGKILL fallback
    return finetune.main(["--task", "coco"])


def test_recipe_launcher_forwards_sigterm(tmp_path):
    """recipes.finetune itself: the real recipe (resolution, checks, lock) with the launch replaced by the fake."""
    out = tmp_path / "run"
    proc = fork(_finetune_with_fake_launcher, _fake_launch(tmp_path), SMOKE="1", EVAL="0", OUTPUT_DIR=str(out))
    pids = _wait_for_ranks(tmp_path)
    _terminate_and_check(proc, pids, tmp_path)
    assert not (tmp_path / ".run.lock").exists()  # released on the way out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_sigkill_of_the_recipe_still_stops_the_launcher(tmp_path):
    """Even a SIGKILL of the recipe reaches the launcher (PR_SET_PDEATHSIG), which stops its ranks."""
    from llava_structlora.utils.procs import run_launcher

    launcher = textwrap.dedent("""
        import signal, subprocess, sys
        from pathlib import Path
        work = Path(sys.argv[1])
        rank = subprocess.Popen([sys.executable, str(work / "rank.py"), str(work / "beat0"), "obey"])
        (work / "beat1").write_text("x")
        (work / "pids").write_text(f"{rank.pid} {rank.pid}")
        def stop(*_):
            rank.terminate(); rank.wait(); sys.exit(143)
        signal.signal(signal.SIGTERM, stop)
        rank.wait()
    """)
    (tmp_path / "rank.py").write_text(RANK)
    (tmp_path / "launcher.py").write_text(launcher)
    proc = fork(run_launcher, [sys.executable, str(tmp_path / "launcher.py"), str(tmp_path)], None, None, 2.0)
    pids = _wait_for_ranks(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)
