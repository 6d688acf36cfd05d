"""The README's Python code blocks run as written, so the docs cannot go stale."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_examples() -> None:
    assert _python_blocks()


def test_readme_python_blocks_run() -> None:
    for block in _python_blocks():
        exec(compile(block, str(README), "exec"), {"__name__": "__readme__"})


def test_readme_shows_the_two_commands() -> None:
    text = README.read_text()
    assert "make demo" in text and "make test" in text
