"""Online rounds: the record stream, the replay memory and generator, the [online] schema."""

from __future__ import annotations

import numpy as np
import pytest

from fedsim.config import ScenarioError, load_scenario
from fedsim.online.replay import ReplayGenerator, ReplayMemory
from fedsim.online.stream import BatchStream, OutOfData


def _labels(counts):
    return np.repeat(np.arange(len(counts)), counts)


def test_batches_are_class_balanced_disjoint_and_exhaustive():
    labels = np.random.default_rng(0).permutation(_labels([50] * 10))
    stream = BatchStream(labels, batch_size=25, seed=1)
    seen = []
    for r in range(20):
        idx = stream.batch(r)
        assert len(idx) == 25
        counts = np.bincount(labels[idx], minlength=10)
        assert counts.max() - counts.min() <= 1  # 25 over 10 classes: 2 or 3 each
        seen.append(idx)
    allidx = np.concatenate(seen)
    assert len(np.unique(allidx)) == len(allidx) == 500  # nothing drawn twice, everything drawn
    # over two rounds the remainder rotates, so no class is always favoured
    two = np.bincount(labels[np.concatenate(seen[:4])], minlength=10)
    assert two.max() - two.min() <= 2
    with pytest.raises(OutOfData, match="runs out of data in round 21"):
        stream.batch(20)
    assert stream.rounds_available() == 20


def test_batch_is_a_pure_function_of_the_round():
    labels = _labels([30, 30, 30])
    a = BatchStream(labels, 9, seed=5, client=2)
    b = BatchStream(labels, 9, seed=5, client=2)
    np.testing.assert_array_equal(a.batch(3), b.batch(3))  # a fresh process draws the same
    assert not np.array_equal(a.batch(3), BatchStream(labels, 9, seed=6, client=2).batch(3))
    assert not np.array_equal(a.batch(3), BatchStream(labels, 9, seed=5, client=3).batch(3))


def test_stratified_follows_the_client_histogram_and_balanced_runs_dry():
    labels = _labels([80, 15, 5])
    strat = BatchStream(labels, 20, seed=0, sampling="stratified")
    assert strat.rounds_available() == 5
    np.testing.assert_array_equal(np.bincount(labels[strat.batch(0)], minlength=3), [16, 3, 1])
    bal = BatchStream(labels, 21, seed=0, sampling="balanced")
    assert bal.rounds_available() == 0  # class 2 has 5 records, a balanced batch needs 7
    with pytest.raises(OutOfData, match="class 2 has 5 records"):
        bal.batch(0)
    with pytest.raises(ValueError, match="sampling must be one of"):
        BatchStream(labels, 5, seed=0, sampling="random")


def test_replay_memory_is_bounded_class_balanced_and_keeps_the_newest():
    mem = ReplayMemory(capacity=30, seed=0)
    for r in range(5):
        y = np.repeat([0, 1, 2], 10)
        mem.add(np.full((30, 2), r, np.float32), y)
        assert len(mem) <= 30
    assert np.bincount(mem.y).tolist() == [10, 10, 10]
    assert (mem.X == 4).all()  # the newest generation survives
    mem.add(np.zeros((5, 2), np.float32), np.full(5, 3))  # a new class gets its share
    counts = np.bincount(mem.y)
    assert len(mem) == 30 and counts[3] == 5 and counts[:3].min() >= 8
    X, y = mem.sample(0.5)
    assert len(y) == 15 and X.shape == (15, 2)


def test_replay_generator_learns_class_conditional_structure():
    rng = np.random.default_rng(0)
    centers = np.array([[4.0, 0.0], [-4.0, 0.0], [0.0, 4.0]])
    y = rng.integers(0, 3, 600)
    X = (centers[y] + 0.3 * rng.normal(size=(600, 2))).astype(np.float32)
    gen = ReplayGenerator(num_classes=5, dim=2, n_epochs=60, batch_size=32, lr=1e-3, seed=0, device="cpu")
    seconds = gen.update(X, y)
    assert seconds > 0
    Xs, ys = gen.sample(300)
    assert set(np.unique(ys)) == {0, 1, 2}  # only classes it has seen
    nearest = np.argmin(((Xs[:, None, :] - centers[None]) ** 2).sum(-1), axis=1)
    assert (nearest == ys).mean() > 0.8  # samples land in the cluster of the label they were made for


def _write(tmp_path, text):
    p = tmp_path / "s.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("body, message", [
    ("[online]\nrounds = 3\nbatch_size = 0\n", "online.batch_size = 0 must be an integer >= 1"),
    ("[online]\nrounds = 3\nbatch_size = []\n", "online.batch_size = [] must be"),
    ("[online]\nrounds = 2\nsetting = \"drift\"\n", "online.setting = 'drift' must be one of iid, domain_shift"),
    ("[online]\nrounds = 2\ndomains = [\"clean\", \"blur:2\"]\nsetting = \"domain_shift\"\n", "online.domains[1]"),
    ("[online]\nrounds = 3\ndomains = [\"clean\"]\nsetting = \"domain_shift\"\n", "needs one per round"),
    ("[online]\nrounds = 2\ndomains = [\"clean\", \"clean\"]\n", "applies only to online.setting"),
    ("[online]\nrounds = 2\n[anonymizers.pca]\nn_components = 8\n", "pca cannot run in online rounds"),
    ("[online.replay]\nmemory_sample_percentage = 0\n", "must be in (0, 1]"),
])
def test_online_schema_errors_name_the_key(tmp_path, body, message):
    with pytest.raises(ScenarioError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        load_scenario(_write(tmp_path, body))


def test_batch_size_list_is_a_sweep(tmp_path):
    s = load_scenario(_write(tmp_path, "[online]\nrounds = 2\nbatch_size = [10, 20]\n"))
    assert s.online.batch_sizes() == [10, 20]
    assert load_scenario(None, ["online.rounds=2", "online.batch_size=7"]).online.batch_sizes() == [7]


def _entry(batch_size, acc):
    R = np.full((3, 3), acc)
    res = {"R": R.tolist(), "accuracy_per_round": [acc] * 3, "metrics": {"average_accuracy": acc}}
    return {"label": f"none [batch {batch_size}]", "batch_size": batch_size, "rounds": 3, "setting": "iid",
            "domains": ["clean"] * 3, "classifiers": {"knn": res, "knn+replay": res}}


def test_accuracy_vs_batch_size_plot_and_online_table(tmp_path):
    from fedsim.report.online_plots import plot_accuracy_vs_batch_size, write_online_plots
    from fedsim.report.summary import format_online

    entries = [_entry(b, a) for b, a in ((10, 0.5), (20, 0.6), (40, 0.7))]
    assert plot_accuracy_vs_batch_size(entries[:1], tmp_path / "one.png") is None  # nothing to sweep
    written = write_online_plots(tmp_path, {"online": entries})
    names = sorted(p.name for p in written)
    assert "online_accuracy_vs_batch_size.png" in names
    assert len(names) == 7 and all(p.stat().st_size > 5000 for p in written)
    table = format_online({"online": entries})
    assert "knn+replay" in table and "0.7000" in table
