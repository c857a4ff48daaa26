"""pip install --no-build-isolation ./bindings/python works offline, and
the installed package loads the library named by CLMOE_LIBRARY."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_pip_install_into_venv(tmp_path):
    lib = os.environ.get("CLMOE_LIBRARY")
    if not lib:
        pytest.skip("CLMOE_LIBRARY not set (scripts/test.sh sets it)")
    venv = tmp_path / "venv"
    try:
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages",
                        str(venv)], check=True, capture_output=True)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"venv unavailable: {exc.stderr.decode()[-200:]}")
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q",
                    "--no-build-isolation", "--no-index",
                    str(ROOT / "bindings" / "python")], check=True)
    out = subprocess.run(
        [str(py), "-c", "import clmoe, numpy as np; print(clmoe.__file__); "
         "print(clmoe.Context().route(np.eye(3, dtype=np.float32), "
         "policy='top_k', k=1).experts.tolist())"],
        check=True, capture_output=True, text=True, cwd=tmp_path).stdout
    assert str(venv) in out and "[0, 1, 2]" in out
