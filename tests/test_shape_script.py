"""benchmarks/shape.py (issue 27's before → after figures) runs on the checkout and prints every figure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_shape_script_prints_every_figure():
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "shape.py"), "--top", "3"], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    for head in ("longest function:", "epoch loop (train/loop.py:train_epochs):", "modules spelling run-folder names",
                 "imports inside functions:", "import cycles (module-top imports):", "import cycles (all imports):",
                 "README.md:"):
        assert head in p.stdout, p.stdout
    # the same check as tests/test_layout.py, through the script's own reading of the source
    assert "modules spelling run-folder names outside runs/: 0" in p.stdout, p.stdout
    assert "import cycles (module-top imports): 0" in p.stdout, p.stdout
