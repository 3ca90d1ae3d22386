"""Bad input from users ends in one clear line before any Ray start-up, or, where the run
can go on, in one logged warning (issue 11, point 7).  Nothing here starts Ray."""

from __future__ import annotations

import errno
import logging
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fedsim.cli import main
from fedsim.config import ScenarioError, load_scenario
from fedsim.preflight import preflight
from tests.conftest import REPO

QUICKSTART = REPO / "scenarios" / "quickstart.toml"
SHIPPED_WEIGHTS = REPO / "fedsim" / "extractors" / "weights" / "compact_cnn-cifar10.pt"


def ray_sessions_of(pid: int) -> list[Path]:
    """Ray session folders a driver with this pid created (Ray names them ``session_<time>_<pid>``)."""
    root = Path("/tmp/ray")
    return [p for p in root.glob(f"session_*_{pid}")] if root.is_dir() else []


def assert_no_ray_started() -> None:
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized(), "Ray was started"
    assert not ray_sessions_of(os.getpid()), "this process started a Ray session"


def run_fails_with_one_line(capsys, argv: list[str], *fragments: str) -> str:
    """``fedsim run ...`` exits 2; its output ends in exactly one ``fedsim: error:`` line,
    without a traceback, holding every fragment; no Ray was started."""
    assert main(["run", *argv]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    errors = [line for line in lines if line.startswith("fedsim: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], captured.err
    assert "Traceback" not in captured.err + captured.out, captured.err
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert_no_ray_started()
    return errors[0]


def quickstart(tmp_path: Path, *overrides: str) -> list[str]:
    return [str(QUICKSTART), "--output-dir", str(tmp_path / "runs"), "--set", "plots.embeddings=\"off\"", *overrides]


# ------------------------------------------------------------------------- images


def _image_folder(root: Path) -> Path:
    """root/{train,test}/{cat,dog}/*.jpg with real JPEGs, plus one garbage and one truncated file."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    (root / "train" / "cat" / "garbage.jpg").write_bytes(b"this is not an image" * 10)
    whole = (root / "train" / "dog" / "0.jpg").read_bytes()
    (root / "train" / "dog" / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    return root


def test_corrupt_images_name_the_file(tmp_path):
    from fedsim.data import DatasetError, load_dataset

    root = _image_folder(tmp_path / "images")
    ds = load_dataset("imagefolder", str(root), "train")
    bad = {str(root / "train" / "cat" / "garbage.jpg"), str(root / "train" / "dog" / "truncated.jpg")}
    seen = set()
    for i in range(len(ds)):
        path = ds.source.samples[i][0]
        if path in bad:
            with pytest.raises(DatasetError) as err:
                ds[i]
            message = str(err.value)
            assert path in message and "\n" not in message and "replace or remove" in message
            seen.add(path)
        else:
            ds[i]
    assert seen == bad


@pytest.mark.parametrize("num_workers", [0, 1])
def test_a_client_extracting_a_corrupt_image_reports_the_file(tmp_path, num_workers):
    """What a worker hits: extraction fails naming the file, in one line also when the
    DataLoader decodes in worker processes (extractor.num_workers)."""
    from fedsim import extractors
    from fedsim.data import DatasetError, load_dataset
    from fedsim.extractors.extract import extract

    root = _image_folder(tmp_path / "images")
    ds = load_dataset("imagefolder", str(root), "train")
    model = extractors.create("compact_cnn", weights="random")
    ds.transform = model.transform()
    with pytest.raises(DatasetError, match="garbage.jpg") as err:
        extract(model, ds, None, batch_size=4, num_workers=num_workers, progress=False)
    assert str(err.value).startswith("cannot decode image ") and "\n" not in str(err.value)


def test_corrupt_images_are_found_lazily_not_in_preflight(tmp_path):
    """Documented: preflight reads the folder layout and labels, not every image."""
    root = _image_folder(tmp_path / "images")
    sc = load_scenario(None, ["data.dataset=\"imagefolder\"", f"data.root=\"{root}\"", "federation.num_clients=2",
                              "classifiers.knn.k=3"])
    preflight(sc, tmp_path / "runs")
    assert_no_ray_started()


# ------------------------------------------------------------------------ weights


def test_garbage_weights_file(tmp_path, capsys):
    bad = tmp_path / "garbage.pt"
    # Seeded, and not starting with 0x80 (a pickle's first byte): os.urandom did 1 time in 256.
    bad.write_bytes(b"GARBAGE" + np.random.default_rng(0).bytes(4096))
    run_fails_with_one_line(capsys, quickstart(tmp_path, f"extractor.weights=\"{bad}\""),
                            "extractor.weights", str(bad), "not a torch checkpoint")


def test_truncated_weights_file(tmp_path, capsys):
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(SHIPPED_WEIGHTS.read_bytes()[:100_000])
    run_fails_with_one_line(capsys, quickstart(tmp_path, f"extractor.weights=\"{bad}\""),
                            str(bad), "damaged or truncated")


def test_weights_of_another_architecture(tmp_path, capsys):
    from fedsim import extractors

    other = tmp_path / "simple_convnet.pt"
    torch.save(extractors.REGISTRY.create("simple_convnet").build(10).state_dict(), other)
    run_fails_with_one_line(capsys, quickstart(tmp_path, f"extractor.weights=\"{other}\""),
                            str(other), "missing keys", "unexpected keys")


# ---------------------------------------------------------------------- partitions


@pytest.mark.parametrize("overrides, fragment", [
    (["federation.num_clients=6000"], "federation.num_clients must be <= the number of samples (5000)"),
    (["partition.method=\"shards\"", "partition.params.num_classes_per_partition=12"],
     "num_classes_per_partition = 12 is above the number of classes (10)"),
    (["federation.num_clients=100", "partition.method=\"dirichlet\"", "partition.params.min_partition_size=100"],
     "The max number of attempts (10) was reached"),
    (["federation.num_clients=3", "partition.method=\"natural_id\""], 'use data.dataset = "imagefolder-parties"'),
])
def test_partition_that_cannot_be_made(tmp_path, capsys, overrides, fragment):
    run_fails_with_one_line(capsys, quickstart(tmp_path, *overrides), "partition.method", fragment)
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------- output dir


def test_unwritable_output_dir_from_the_flag(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    argv = [str(QUICKSTART), "--output-dir", str(blocker / "runs")]
    run_fails_with_one_line(capsys, argv, "output_dir", str(blocker / "runs"), "writable")


def test_unwritable_output_dir_from_the_scenario(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    scenario = tmp_path / "s.toml"
    scenario.write_text(f'output_dir = "{blocker / "deep" / "runs"}"\n')
    run_fails_with_one_line(capsys, [str(scenario)], "output_dir", "Not a directory")


def test_output_dir_check_leaves_no_folder_behind(tmp_path, capsys):
    out = tmp_path / "new" / "runs"
    run_fails_with_one_line(capsys, [str(QUICKSTART), "--output-dir", str(out), "--set", "classifiers.knn.k=6000"],
                            "classifiers.knn.k")
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["a/b", "..", "", ".hidden", "a\\\\b", "-x"])
def test_names_that_are_no_folder_name(tmp_path, capsys, name):
    run_fails_with_one_line(capsys, quickstart(tmp_path, f'name="{name}"'), "name = ", "letters, digits")


# -------------------------------------------------------------- device and precision


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_device_without_cuda(tmp_path, capsys):
    run_fails_with_one_line(capsys, quickstart(tmp_path, 'extractor.device="cuda"'), 'extractor.device = "cuda"',
                            '"auto"')


def test_bf16_on_a_cpu_without_bf16_units_is_warned_about(tmp_path, monkeypatch, caplog):
    import fedsim.device

    monkeypatch.setattr(fedsim.device, "_cpu_has_bf16_units", lambda: False)
    sc = load_scenario(QUICKSTART, ['extractor.amp="bf16"', 'extractor.device="cpu"'])
    with caplog.at_level(logging.WARNING, logger="fedsim"):
        preflight(sc, tmp_path / "runs")
    warned = [r.getMessage() for r in caplog.records if "extractor.amp" in r.getMessage()]
    assert len(warned) == 1 and '"auto"' in warned[0] and "slower" in warned[0]


# ---------------------------------------------------------------------- Ray address


@pytest.mark.parametrize("address", ["nonsense", "127.0.0.1", "host:0", "http://h:1", "ray://h"])
def test_malformed_ray_address(tmp_path, capsys, address):
    run_fails_with_one_line(capsys, quickstart(tmp_path, f'federation.ray_address="{address}"'),
                            "federation.ray_address", '"host:port"')


def _closed_local_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_unreachable_ray_address_fails_in_seconds(tmp_path, capsys, scheme):
    import time

    port = _closed_local_port()
    t0 = time.perf_counter()
    run_fails_with_one_line(capsys, quickstart(tmp_path, f'federation.ray_address="{scheme}127.0.0.1:{port}"'),
                            "federation.ray_address", f"127.0.0.1:{port}", "ray start")
    assert time.perf_counter() - t0 < 60  # preflight included; the connect itself gives up in 3 s


# -------------------------------------------------------------------- embedding cache


def test_unwritable_cache_dir_warns_once_and_the_run_goes_on(tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    sc = load_scenario(QUICKSTART, [f'extractor.cache_dir="{blocker / "cache"}"'])
    with caplog.at_level(logging.WARNING, logger="fedsim"):
        preflight(sc, tmp_path / "runs")  # no error
    warned = [r.getMessage() for r in caplog.records if "embedding cache" in r.getMessage()]
    assert len(warned) == 1 and str(blocker / "cache") in warned[0] and "not writable" in warned[0]


def test_read_only_cache_still_reads_and_skips_writes(tmp_path, monkeypatch, caplog):
    from fedsim.extractors import cache as cache_mod

    store = cache_mod.EmbeddingCache(tmp_path / "cache")
    key = {"k": 1}
    store.put(key, np.ones((2, 3), np.float32))

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(cache_mod.tempfile, "mkstemp", read_only)
    with caplog.at_level(logging.WARNING, logger="fedsim"):
        assert store.put({"k": 2}, np.zeros((2, 3), np.float32)) is None
        assert store.put({"k": 3}, np.zeros((2, 3), np.float32)) is None
    assert np.array_equal(store.get(key), np.ones((2, 3), np.float32))
    assert sum("not writable" in r.getMessage() for r in caplog.records) == 1


# ------------------------------------------------------------------- anonymizers


@pytest.mark.parametrize("table, fragment", [
    ("[anonymizers.gaussian]\nnoise_scale = 0.5\nfoo = 1\n", "unknown parameter 'foo' for anonymizer 'gaussian'; "
                                                             "allowed: noise_scale, relative"),
    ("[anonymizers.gaussian]\nfoo = 1\n", "unknown parameter 'foo'"),
    ("[anonymizers.gaussian]\nnoise_scale = 0.5\nn_clusters = 3\n", "unknown parameter 'n_clusters'"),
    ("[anonymizers.none]\nfoo = 1\n", "allowed: none"),
    ("[anonymizers.laplace]\nnoise_scale = 0.5\nseed = 3\n", "scenario's top-level seed"),
    ("[anonymizers.permutation]\nkey = 7\n", "client-side secret"),
])
def test_anonymizer_parameters_the_method_does_not_take(tmp_path, capsys, table, fragment):
    path = tmp_path / "s.toml"
    path.write_text(table)
    run_fails_with_one_line(capsys, [str(path), "--output-dir", str(tmp_path / "runs")], "anonymizers.", fragment)


# --------------------------------------------------------------------------- kNN


def test_knn_k_above_every_record(tmp_path, capsys):
    run_fails_with_one_line(capsys, quickstart(tmp_path, "classifiers.knn.k=6000"), "classifiers.knn.k = 6000",
                            "5000")


def test_knn_k_above_the_online_batches(tmp_path, capsys):
    run_fails_with_one_line(capsys, quickstart(tmp_path, "online.rounds=2", "online.batch_size=10",
                                               "classifiers.knn.k=50", "anonymizers={none={}}"),
                            "classifiers.knn.k = 50", "40")


def test_knn_with_fewer_records_than_k_votes_over_all_and_warns(caplog):
    from fedsim.classifiers import KNNClassifier

    X = np.eye(4, dtype=np.float32)
    clf = KNNClassifier(k=10).fit(X, np.array([0, 1, 1, 1]))
    with caplog.at_level(logging.WARNING, logger="fedsim"):
        pred = clf.predict(X)
    assert (pred == 1).all()  # the majority of all 4
    warned = [r.getMessage() for r in caplog.records if "knn" in r.getMessage()]
    assert len(warned) == 1 and "k = 10" in warned[0] and "4 records" in warned[0]


# ------------------------------------------------------------------- empty queries


def test_clients_without_queries_are_warned_about(tmp_path, caplog):
    sc = load_scenario(None, ["federation.num_clients=1000"])
    with caplog.at_level(logging.WARNING, logger="fedsim"):
        preflight(sc, tmp_path / "runs")
    warned = [r.getMessage() for r in caplog.records if "no query images" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("237 of 1000 clients") and "NaN" in warned[0]
    assert_no_ray_started()


def test_preflight_errors_are_scenario_errors(tmp_path):
    """For library callers: the same checks raise ScenarioError (the CLI prints it)."""
    with pytest.raises(ScenarioError, match="federation.num_clients"):
        preflight(load_scenario(None, ["federation.num_clients=6000"]), tmp_path / "runs")
