"""python3 -m clmoe.demo runs and writes its figure."""
import os

import pytest


def test_demo_writes_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from clmoe import demo
    out = tmp_path / "routing.png"
    demo.main(["--plot", str(out)])
    text = capsys.readouterr().out
    for name in ("TOPK(k=2)", "TOPP(p=0.4)", "IMPORTANCE", "RESONANCE"):
        assert name in text
    assert out.exists() and os.path.getsize(out) > 10000
