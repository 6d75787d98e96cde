"""The repository stands alone: what code and tests cite lives in docs/, and exists there."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator, Set, Tuple

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("magk_client", "tests", "benchmarks", "examples")


def _texts() -> Iterator[Tuple[Path, str]]:
    for top in SOURCES:
        for path in sorted((ROOT / top).rglob("*")):
            if path.suffix in (".py", ".rst", ".ipynb") and path.is_file():
                yield path, path.read_text(encoding="utf-8")
    yield ROOT / "README.rst", (ROOT / "README.rst").read_text(encoding="utf-8")


def _fault_rows() -> Set[int]:
    text = (ROOT / "docs" / "faults.rst").read_text(encoding="utf-8")
    return {int(m.group(1)) for m in re.finditer(r"^(\d{1,2}) +\S", text, re.M)}


def _sse_rules() -> Set[str]:
    text = (ROOT / "docs" / "sse.rst").read_text(encoding="utf-8")
    return set(re.findall(r"^(S\d+) --", text, re.M))


def test_the_docs_cover_every_row_and_rule() -> None:
    assert _fault_rows() == set(range(1, 37))
    assert _sse_rules() == {f"S{n}" for n in range(1, 18)}


def test_every_citation_names_a_row_or_rule_that_exists() -> None:
    rows, rules = _fault_rows(), _sse_rules()
    cited_rows = re.compile(r"docs/faults\.rst,? rows? ((?:\d+(?:, | and |-)?)+)")
    cited_rules = re.compile(r"docs/sse\.rst,? (S\d+)(?:-(S\d+))?")
    seen = 0
    for path, text in _texts():
        for m in cited_rows.finditer(text):
            for number in re.findall(r"\d+", m.group(1)):
                seen += 1
                assert int(number) in rows, f"{path.name} cites docs/faults.rst row {number}"
        for m in cited_rules.finditer(text):
            for rule in filter(None, m.groups()):
                seen += 1
                assert rule in rules, f"{path.name} cites docs/sse.rst {rule}"
    assert seen > 20


def test_nothing_cites_documents_outside_the_repository() -> None:
    outside = re.compile(r"FAULTS\.md|PROTOCOL\.md|DESIGN\.md|\.\./shared|\bFAULTS (?:row|S?\d)")
    for path, text in _texts():
        if path.name == "test_docs.py":
            continue
        assert not outside.search(text), f"{path.relative_to(ROOT)} cites a document the repository lacks"


def test_no_commit_hashes_in_test_docstrings() -> None:
    commit = re.compile(r"\b(?:commit|fixed in|since|before) [0-9a-f]{7,40}\b")
    for path in sorted((ROOT / "tests").glob("*.py")):
        assert not commit.search(path.read_text(encoding="utf-8")), f"{path.name} names a commit"
