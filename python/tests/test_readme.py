"""Every ```python block of the READMEs (the repository's and the package's) runs as
written: the snippets users copy are kept working."""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BLOCKS = [
    (path.relative_to(ROOT), i, code)
    for path in (ROOT / "README.md", ROOT / "python" / "README.md")
    for i, code in enumerate(re.findall(r"```python\n(.*?)```", path.read_text(), re.S))
]


def test_there_are_snippets_in_both_readmes():
    assert {str(p) for p, _, _ in BLOCKS} == {"README.md", "python/README.md"}


@pytest.mark.parametrize("path,index,code", BLOCKS, ids=[f"{p}#{i}" for p, i, _ in BLOCKS])
def test_readme_snippet_runs(path, index, code, monkeypatch):
    # Relative paths in the snippets (fixtures/...) are from the repository root.
    monkeypatch.chdir(ROOT)
    exec(compile(code, f"{path} block {index}", "exec"), {"__name__": f"readme_{index}"})
