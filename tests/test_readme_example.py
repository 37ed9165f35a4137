"""The README's estimator example runs as written (issue 24 item 2)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "### Estimators on in-memory images"


def readme_example() -> str:
    text = README.read_text()
    assert SECTION in text, f"{README}: section {SECTION!r} is missing"
    blocks = re.findall(r"```python\n(.*?)```", text.split(SECTION, 1)[1], flags=re.S)
    assert blocks, f"{README}: no python block under {SECTION!r}"
    return blocks[0]


def test_readme_estimator_example_runs(capsys):
    code = readme_example()
    assert "FeatureExtractor" in code and "fit_predict" in code and "assert" in code
    exec(compile(code, f"{README}:{SECTION}", "exec"), {"__name__": "readme_example"})
    assert "torch.Size([8, 8, 8])" in capsys.readouterr().out
