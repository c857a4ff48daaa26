"""clmoe.ExpertParallel under mpirun (2 and 3 ranks, oversubscribed):
tests/python/mpi/ep_check.py compares every rank with the single-process
layer bit for bit."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _have_mpi():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return shutil.which("mpirun") is not None


@pytest.mark.skipif(not _have_mpi(), reason="mpirun or mpi4py missing")
@pytest.mark.parametrize("ranks", [2, 3])
def test_expert_parallel_matches_single_process(ranks):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               PYTHONPATH=str(HERE.parents[1] / "bindings" / "python"))
    out = subprocess.run(
        ["mpirun", "-np", str(ranks), "--oversubscribe", "/usr/bin/python3",
         str(HERE / "mpi" / "ep_check.py")],
        env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK" in out.stdout
