"""Every number in the README's benchmark table comes from a saved file under benchmarks/results/."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_benchmark_table_matches_the_saved_results():
    table = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "summarize.py")], capture_output=True,
                           text=True, check=True).stdout.strip()
    assert table in (ROOT / "README.md").read_text(), \
        "README's benchmark block is stale: run .venv/bin/python benchmarks/summarize.py --write"


def test_readme_opens_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    block = text.split("```", 2)[1]
    assert "make demo" in block and "make test" in block
    assert text.index("make demo") < text.index("##")
