"""Every Python block in README.md runs as written, on the backends its first line names
(`# runs on: torch, jax, tensorflow`), in a fresh process in an empty directory."""

import os
import re
import subprocess
import sys

import pytest

from helpers import BACKEND
from helpers import ROOT


def _blocks():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    return [(i, block) for i, block in enumerate(blocks, 1)]


def _backends(block):
    return re.findall(r"torch|jax|tensorflow", block.splitlines()[0].split("(")[0])


BLOCKS = _blocks()
# A block for torch alone is left out of the other passes (as torch_only tests are).
PARAMS = [pytest.param(i, block, id=f"block{i}",
                       marks=[pytest.mark.torch_only] if _backends(block) == ["torch"] else [])
          for i, block in BLOCKS]


def test_every_python_block_says_where_it_runs():
    assert len(BLOCKS) >= 4
    for i, block in BLOCKS:
        assert re.match(r"# runs on: (torch|jax|tensorflow)", block), f"block {i}"


@pytest.mark.parametrize("number, block", PARAMS)
def test_readme_block_runs(tmp_path, number, block):
    assert BACKEND in _backends(block), f"block {number} does not run on {BACKEND}"
    result = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True,
                            cwd=tmp_path, timeout=600,
                            env={**os.environ, "KERAS_BACKEND": BACKEND})
    assert result.returncode == 0, f"block {number}:\n{block}\n{result.stderr[-3000:]}"
