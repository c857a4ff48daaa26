"""The version has one source (project(VERSION) in CMakeLists.txt): the
loaded library and the Python package's metadata must both carry it."""
import re

import clmoe
from conftest import ROOT


def cmake_version():
    text = (ROOT / "CMakeLists.txt").read_text()
    return re.search(r"project\(clmoe VERSION (\d+\.\d+\.\d+)", text).group(1)


def test_library_version_is_cmakes():
    assert clmoe.version() == cmake_version()


def test_python_package_version_is_cmakes():
    text = (ROOT / "bindings" / "python" / "pyproject.toml").read_text()
    assert re.search(r'^version = "([^"]+)"', text, re.M).group(1) == \
        cmake_version()
