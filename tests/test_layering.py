"""The package's imports run downward only (the contracts in pyproject.toml's
[tool.importlinter]): a breach fails here, naming the offending import chain."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    lint_imports = Path(sys.executable).parent / "lint-imports"  # reads ./pyproject.toml
    done = subprocess.run([str(lint_imports), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120)
    start = done.stdout.find("Broken contracts")
    assert done.returncode == 0, f"import contracts broken:\n{done.stdout[max(start, 0):]}{done.stderr}"
