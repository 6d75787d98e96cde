"""README.rst is the user manual, and it is tested.

- Every ``.. code-block:: python`` block runs against a fresh reference backend (``localhost:8000`` in
  the README is replaced with the backend's address), in this process, and must finish without error
  and leave no SDK thread behind. A block whose first line is ``# test_<name>.py`` is a pytest module:
  it runs under pytest in a child process. Plain literal blocks (``::``) are sketches and not run.
- Every field of every config dataclass appears in the README's configuration reference, under the
  heading of its class, so a new field without documentation fails here.
- The README is valid reStructuredText (setup.cfg publishes it as the long description).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, NamedTuple

import docutils.core
import pytest
from cli_helpers import child_env

from magk_client import (
    ErrorRecoveryConfig,
    RealtimeAdapterConfig,
    RealtimeConnectionConfig,
    ServiceIntegrationConfig,
    StoreConfig,
)
from magk_client.testing import Backend

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.rst"
TEXT = README.read_text(encoding="utf-8")
#: the README's placeholder backend address
PLACEHOLDER = "localhost:8000"
#: thread names of the test tools, which may outlive a block (the backend's loop, the proxy's)
TOOL_THREADS = ("magk-backend", "magk-proxy")
CONFIGS = (RealtimeConnectionConfig, RealtimeAdapterConfig, ErrorRecoveryConfig, ServiceIntegrationConfig, StoreConfig)


class Block(NamedTuple):
    line: int  # the README line of the block's first code line (1-based)
    code: str


def python_blocks(text: str) -> List[Block]:
    """The ``.. code-block:: python`` blocks of ``text``, dedented, with their line numbers."""
    lines = text.splitlines()
    blocks: List[Block] = []
    i = 0
    while i < len(lines):
        if re.match(r"^\s*\.\. code-block:: python\s*$", lines[i]):
            indent = len(lines[i]) - len(lines[i].lstrip())
            i += 1
            while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith(":")):
                i += 1  # the blank line and any options
            start, body = i, []
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                body.append(lines[i])
                i += 1
            while body and not body[-1].strip():
                body.pop()
            width = min(len(line) - len(line.lstrip()) for line in body if line.strip())
            blocks.append(Block(start + 1, "\n".join(line[width:] for line in body) + "\n"))
        else:
            i += 1
    return blocks


BLOCKS = python_blocks(TEXT)
SCRIPTS = [b for b in BLOCKS if not re.match(r"# test_\w+\.py\s*$", b.code.splitlines()[0])]
PYTEST_MODULES = [b for b in BLOCKS if b not in SCRIPTS]


def _sdk_threads() -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("magk-") and not t.name.startswith(TOOL_THREADS)]


def _placeholders(code: str) -> List[str]:
    """Lines whose code (not their comment) holds ``...``: a sketch, not a runnable example."""
    return [line for line in code.splitlines() if "..." in line.split("#", 1)[0]]


def test_the_readme_has_runnable_examples_of_every_layer() -> None:
    code = "".join(b.code for b in SCRIPTS)
    assert len(SCRIPTS) >= 8 and len(PYTEST_MODULES) >= 1
    for name in ("RealtimeService(", "RealtimeAdapter(", "WorkflowController(", "NodeExecutionStore(",
                 "RealtimeIntegration(", "create_global_realtime_service(", "submit_", ".payload",
                 "wait_until_complete(", "FaultProxy("):
        assert name in code, f"no runnable README example uses {name}"


@pytest.mark.parametrize("block", SCRIPTS, ids=[f"line{b.line}" for b in SCRIPTS])
def test_readme_example_runs_against_the_reference_backend(block: Block, caplog: pytest.LogCaptureFixture) -> None:
    assert not _placeholders(block.code), f"README line {block.line}: make a sketch a literal block (::)"
    before = set(_sdk_threads())
    caplog.set_level(logging.WARNING, logger="magk_client")
    with Backend(pace=0.05) as backend:
        code = block.code.replace(PLACEHOLDER, f"{backend.host}:{backend.port}")
        namespace: Dict[str, Any] = {"__name__": "__readme__"}
        # padded so that line numbers in a traceback are README.rst's
        compiled = compile("\n" * (block.line - 1) + code, str(README), "exec")
        try:
            exec(compiled, namespace)
        finally:
            cleanup = namespace.get("cleanup_global_realtime_service")
            if callable(cleanup):
                cleanup()
        deadline = time.monotonic() + 10.0
        for thread in set(_sdk_threads()) - before:
            thread.join(max(0.0, deadline - time.monotonic()))
        left = [t.name for t in set(_sdk_threads()) - before]
        assert not left, f"README line {block.line}: the example left SDK threads running: {left}"
    problems = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("magk_client.") and not r.name.startswith("magk_client.testing")
    ]
    assert not problems, f"README line {block.line}: the SDK logged warnings: {problems}"


@pytest.mark.parametrize("block", PYTEST_MODULES, ids=[f"line{b.line}" for b in PYTEST_MODULES])
def test_readme_pytest_example_passes(block: Block, tmp_path: Path) -> None:
    name = block.code.splitlines()[0][2:].strip()
    (tmp_path / name).write_text(block.code, encoding="utf-8")
    n_tests = len(re.findall(r"^def test_", block.code, re.M))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=child_env(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{n_tests} passed" in result.stdout, result.stdout


def _reference_section(heading: str) -> str:
    """The text of a subsection of "Configuration reference" (up to the next heading)."""
    start = TEXT.index("\nConfiguration reference\n")
    end = TEXT.index("\nErrors\n------", start)
    section = TEXT[start:end]
    m = re.search(rf"^{heading}\n~+\n(.*?)(?=^\S[^\n]*\n~+\n|\Z)", section, re.M | re.S)
    assert m, f"the configuration reference has no {heading} subsection"
    return m.group(1)


@pytest.mark.parametrize("config", CONFIGS, ids=[c.__name__ for c in CONFIGS])
def test_every_config_field_is_in_the_configuration_reference(config: type) -> None:
    documented = set(re.findall(r"^``(\w+)``\s", _reference_section(config.__name__), re.M))
    missing = [f.name for f in dataclasses.fields(config) if f.name not in documented]
    assert not missing, f"README.rst, Configuration reference, {config.__name__}: no row for {missing}"


def test_the_reference_gives_the_real_defaults() -> None:
    """Spot checks of the default column against the dataclasses (the numbers people copy)."""
    rows: Dict[str, str] = {}
    for config in CONFIGS:
        for m in re.finditer(r"^``(\w+)``\s+(\S+)", _reference_section(config.__name__), re.M):
            rows[f"{config.__name__}.{m.group(1)}"] = m.group(2)
    for config in (RealtimeConnectionConfig, RealtimeAdapterConfig, ServiceIntegrationConfig, StoreConfig):
        for f in dataclasses.fields(config):
            default = f.default
            if isinstance(default, bool) or default is None:
                expected = f"``{default}``"
            elif isinstance(default, (int, float)) and default >= 1 << 20:
                expected = f"{default / (1 << 20):g}"
            elif isinstance(default, (int, float)):
                expected = f"{default:g}"
            else:
                continue
            assert rows[f"{config.__name__}.{f.name}"] == expected, f"{config.__name__}.{f.name}"


def test_the_readme_is_valid_restructuredtext() -> None:
    docutils.core.publish_doctree(TEXT, settings_overrides={"halt_level": 2, "report_level": 2})


def test_the_quick_start_commands_are_the_ones_ci_runs() -> None:
    assert 'python3 -m venv .venv && . .venv/bin/activate && pip install ".[server,cli]" && magk-client demo' in TEXT
    assert 'pip install ".[dev]" && python -m pytest' in TEXT
    assert 'pip install ".[dev]" -q && python -m pytest' in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
