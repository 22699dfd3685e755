"""Several processes building one kernel configuration at once (torchrun's ranks) take turns
(toolchain.locked_build): one builds, the others load its result; a killed builder blocks nobody."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from gna_diffusers.backends import toolchain

ROOT = Path(__file__).resolve().parents[1]

# One "rank": builds like ninja does (writes the result in pieces, slowly, unless it is already complete) under the
# lock, and logs when it enters and leaves the build and what it did.
RANK = r"""
import os, sys, time
from pathlib import Path
from gna_diffusers.backends.toolchain import locked_build
build_dir, log = Path(sys.argv[1]), Path(sys.argv[2])

def build():
    with open(log, "a") as f:
        f.write(f"enter {os.getpid()}\n")
    result = build_dir / "kernel.so"
    if result.exists() and result.read_text() == "x" * 4000:
        what = "loaded"
    else:
        with open(result, "w") as f:
            for _ in range(4):
                f.write("x" * 1000)
                f.flush()
                time.sleep(0.2)
        what = "built"
    with open(log, "a") as f:
        f.write(f"leave {os.getpid()} {what}\n")
    return what

print(locked_build(build_dir, build))
"""


def _start(args: list[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    return subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.PIPE, text=True)


def test_ranks_building_one_configuration_take_turns(tmp_path):
    build_dir, log = tmp_path / "cache" / "gna_cutlass_sm90_bfloat16_d128_single_0123456789", tmp_path / "log"
    build_dir.mkdir(parents=True)
    (build_dir / "lock").write_text("")  # torch's baton, left behind by a killed build: must not hang anyone
    ranks = [_start(["-c", RANK, str(build_dir), str(log)]) for _ in range(6)]
    outputs = [rank.communicate(timeout=120)[0].strip() for rank in ranks]
    assert all(rank.returncode == 0 for rank in ranks)
    assert sorted(outputs) == ["built"] + ["loaded"] * 5
    assert (build_dir / "kernel.so").read_text() == "x" * 4000
    events = log.read_text().split("\n")[:-1]
    assert len(events) == 12
    for i in range(0, 12, 2):  # never two inside at once: each enter is followed by its own leave
        assert events[i].split()[0] == "enter" and events[i + 1].split()[:2] == ["leave", events[i].split()[1]]
    assert not (build_dir / "lock").exists()


def test_killed_builder_releases_the_lock(tmp_path):
    build_dir = tmp_path / "cache" / "config"
    hold = ("import sys, time\nfrom pathlib import Path\nfrom gna_diffusers.backends.toolchain import locked_build\n"
            "locked_build(Path(sys.argv[1]), lambda: (print('holding', flush=True), time.sleep(600)))")
    holder = _start(["-c", hold, str(build_dir)])
    assert holder.stdout.readline().strip() == "holding"
    started = time.perf_counter()
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    assert toolchain.locked_build(build_dir, lambda: "mine") == "mine"
    assert time.perf_counter() - started < 30
