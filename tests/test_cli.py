"""Bad input fails before any work: one clear line, non-zero exit, no run folder."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fedsim.cli import main


@pytest.mark.parametrize(
    "text, overrides, fragment",
    [
        ("[data]\ncolour = 1\n", [], "unknown key data.colour"),
        ("[partition]\nmethod = 'dirichlet'\n[partition.params]\nalpha = 0\n", [], "partition.params: partitioner "
         "'dirichlet': Alpha values should be strictly greater than zero"),
        ("", ["federation.num_clients=0"], "federation.num_clients = 0 must be >= 1"),
        ("[data]\ndataset = 'cifar10'\nroot = '{missing}'\n", [], "cifar10 not found"),
        ("[data]\ndataset = 'imagefolder'\nroot = '{missing}'\n", [], "imagefolder"),
    ],
)
def test_bad_scenarios_exit_2_with_one_line(tmp_path, capsys, text, overrides, fragment):
    missing = tmp_path / "no-data-here"
    path = tmp_path / "bad.toml"
    path.write_text(text.format(missing=missing))
    out = tmp_path / "runs"
    argv = ["run", str(path), "--output-dir", str(out)] + (["--set", *overrides] if overrides else [])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fedsim: error: ") and fragment in err, err
    assert len(err.splitlines()) == 1, err
    assert not out.exists() or not any(out.iterdir())


def test_missing_dataset_error_mentions_download(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(f"[data]\ndataset = 'cifar100'\nroot = '{tmp_path / 'nothing'}'\n")
    assert main(["run", str(path), "--output-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "nothing") in err and "download" in err


def test_console_script_reports_missing_file(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fedsim", "run", str(tmp_path / "nope.toml")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"fedsim: error: {tmp_path / 'nope.toml'}: no such scenario file"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "table, fragment",
    [
        ("[anonymizers.gaussian]\nnoise_scale = -0.1\n", "noise_scale"),
        ("[anonymizers.laplace]\nnoise_scale = [0.1, -1.0]\n", "noise_scale"),
        ("[anonymizers.pca]\nn_components = 512\n", "n_components"),
        ("[anonymizers.random_projection]\nn_components = 0\n", "n_components"),
        ("[anonymizers.mdav]\nk = 5000\n", "k"),
        ("[anonymizers.kmeans]\nn_clusters = 3000\n", "n_clusters"),
        ("[anonymizers.dp_gaussian]\nepsilon = 0.0\ndelta = 1e-5\n", "epsilon"),
        ("[anonymizers.dp_gaussian]\nepsilon = 1.0\ndelta = 1.5\n", "delta"),
        ("[anonymizers.kmeans]\nn_clusters = 10\nassign_labels = 'mean'\n", "assign_labels"),
    ],
)
def test_bad_anonymizer_parameters_fail_before_any_work(tmp_path, capsys, table, fragment):
    path = tmp_path / "bad.toml"
    path.write_text("[federation]\nnum_clients = 4\n" + table)
    out = tmp_path / "runs"
    assert main(["run", str(path), "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fedsim: error: ") and "anonymizers." in err and fragment in err, err
    assert len(err.splitlines()) == 1, err
    assert not out.exists() or not any(out.iterdir())
