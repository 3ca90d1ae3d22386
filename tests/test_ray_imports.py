"""Ray workers import the same fedsim as the driver, wherever the run is started from.

Ray puts the driver's working directory first on every worker's sys.path; started from a
folder that holds another fedsim checkout, the clients would run that checkout's code
(``fedsim.raystart`` prevents it).  The fake checkout here fails loudly when imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_workers_ignore_a_fedsim_in_the_working_directory(tmp_path):
    fake = tmp_path / "fedsim"
    fake.mkdir()
    (fake / "__init__.py").write_text('raise ImportError("wrong fedsim: the checkout in the working directory")\n')
    # The console script, not `python -m fedsim`: that would import the fake in the driver too.
    fedsim_cli = Path(sys.executable).parent / "fedsim"
    env = {**os.environ, "FEDSIM_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(
        [str(fedsim_cli), "run", str(REPO / "scenarios" / "quickstart.toml"), "--output-dir", str(tmp_path / "runs"),
         "--set", "federation.num_clients=2", 'plots.embeddings="off"', "anonymizers={none={}}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    output = proc.stdout + proc.stderr
    assert "wrong fedsim" not in output, output[-3000:]
    assert proc.returncode == 0, output[-3000:]
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "results.json").is_file() and not runs[0].name.endswith("-failed")
