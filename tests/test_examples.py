"""The examples run as a user would run them, against the embedded backend."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("script", ["basic_connect.py", "pull_api.py", "resilient_stream.py"])
def test_example_runs(script: str) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script)], capture_output=True, text=True, timeout=90, check=False
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    if script == "resilient_stream.py":
        assert "in order and exactly once: True" in result.stdout
    elif script == "pull_api.py":
        assert result.stdout.rstrip().endswith("done")
    else:
        assert "workflow_completed" in result.stdout
