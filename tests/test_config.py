"""Scenario schema: defaults, overrides, and one clear error per bad input."""

from __future__ import annotations

import pytest

from fedsim.config import Scenario, ScenarioError, from_dict, load_scenario, to_toml
from tests.conftest import REPO


def test_quickstart_loads_with_expected_values():
    sc = load_scenario(REPO / "scenarios" / "quickstart.toml")
    assert sc.name == "quickstart"
    assert sc.federation.num_clients == 4
    assert sc.data.dataset == "cifar10-mini"
    assert sc.classifiers == {"knn": {"k": 5, "metric": "cosine"}}
    assert sc.anonymizers == {"none": {}, "laplace": {"noise_scale": 0.5, "relative": True}, "permutation": {}}
    assert sc.plots.embeddings == "pca" and sc.online.rounds == 0


def test_name_defaults_to_file_stem(write_scenario):
    assert load_scenario(write_scenario("seed = 3\n", "my-run.toml")).name == "my-run"


def test_overrides_are_typed_toml_values(write_scenario):
    path = write_scenario("")
    sc = load_scenario(path, [
        "federation.num_clients=8", "partition.method=dirichlet", "partition.params.alpha=0.3",
        "data.download=true", "classifiers.knn.k=3", "federation.client_resources.num_cpus=2",
    ])
    assert sc.federation.num_clients == 8
    assert sc.partition.method == "dirichlet" and sc.partition.params == {"alpha": 0.3}
    assert sc.data.download is True
    assert sc.classifiers["knn"]["k"] == 3
    assert sc.federation.client_resources.num_cpus == 2.0


def test_plain_string_override_for_paths(write_scenario, tmp_path):
    sc = load_scenario(write_scenario(""), ["data.dataset=imagefolder", f"data.root={tmp_path}"])
    assert sc.data.root == str(tmp_path)


@pytest.mark.parametrize(
    "text, overrides, fragment",
    [
        ("colour = 1\n", [], "unknown key colour"),
        ("[data]\nsplit = 'train'\n", [], "unknown key data.split"),
        ("[partition]\nmethod = 'dirichlet'\n[partition.params]\nalpha = 0.0\n", [],
         "partition.params: partitioner 'dirichlet': Alpha values should be strictly greater than zero"),
        ("[partition]\nmethod = 'dirichlet'\n[partition.params]\nbeta = 1\n", [],
         "partition.params: unknown parameter 'beta' for partitioner 'dirichlet'; allowed: alpha, min_partition_size"),
        ("[partition]\nalpha = 0.5\n", [], "unknown key partition.alpha; allowed keys in partition: method, params; "
         "the partitioner's parameters go in [partition.params]"),
        ("", ["partition.params.seed=1"], "partition.params: parameter 'seed' cannot be set in a scenario"),
        ("", ["partition.method='SizePartitioner'", "partition.params.partition_sizes=[10, 20]"],
         "partition_sizes lists 2 sizes, one per client, and there are 4 clients (federation.num_clients)"),
        ("[federation]\nnum_clients = 0\n", [], "federation.num_clients = 0 must be >= 1"),
        ("[federation]\nnum_clients = 'four'\n", [], "federation.num_clients: expected an integer"),
        ("[federation]\nnum_clients = 2.5\n", [], "federation.num_clients: expected an integer"),
        ("seed = true\n", [], "seed: expected an integer"),
        ("[data]\ndownload = 'yes'\n", [], "data.download: expected true or false"),
        ("[data]\ndataset = 'mnist'\n", [], "data.dataset = 'mnist' is unknown; allowed: cifar10"),
        ("[data]\ndataset = 'cifar10'\n", [], "data.root must be set"),
        ("[partition]\nmethod = 'zipf'\n", [], "partition.method = 'zipf' is unknown; allowed: iid, dirichlet, "
         "shards, natural_id, IidPartitioner, DirichletPartitioner"),
        ("[classifiers.knn]\nk = 0\n", [], "classifiers.knn: k must be an integer >= 1"),
        ("[classifiers.knn]\nmetric = 'manhattan'\n", [], "classifiers.knn: metric must be one of cosine, euclidean"),
        ("[classifiers.svm]\n", [], "unknown classifier 'svm'; allowed: knn"),
        ("[anonymizers.blur]\n", [], "unknown anonymizer 'blur'; allowed: none"),
        ("[anonymizers.none]\nnoise = 1\n", [], "anonymizers.none"),
        ("[extractor]\nname = 'vgg99'\n", [], "unknown extractor 'vgg99'"),
        ("[extractor]\nweights = '/no/such.pt'\n", [], "weights = '/no/such.pt': no such file"),
        ("[extractor]\ndevice = 'tpu'\n", [], "extractor.device = 'tpu' must be one of auto, cpu, cuda"),
        ("", ["federation.num_clients=-3"], "federation.num_clients = -3 must be >= 1"),
        ("", ["nokey"], "expected key=value"),
        ("[data\n", [], "not valid TOML"),
    ],
)
def test_bad_scenarios_name_file_and_key(write_scenario, text, overrides, fragment):
    path = write_scenario(text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path, overrides)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert fragment in message, message
    assert "\n" not in message


def test_missing_file():
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario("/definitely/not/here.toml")


def test_resolved_toml_round_trips(write_scenario):
    sc = load_scenario(write_scenario("[partition]\nmethod = 'DistributionPartitioner'\n[partition.params]\n"
                                      "distribution_array = [[1, 2], [3, 4]]\nnum_unique_labels_per_partition = 1\n"
                                      "preassigned_num_samples_per_label = 0\n"), ["seed=9"])
    again = load_scenario(write_scenario(to_toml(sc.to_dict()), "resolved.toml"))
    assert again.to_dict() == sc.to_dict()
    assert from_dict(sc.to_dict()) == sc


def test_defaults_are_a_valid_scenario():
    assert isinstance(load_scenario(None), Scenario)


def test_to_toml_round_trips_fault_tables(tmp_path):
    import tomllib

    from fedsim.config import load_scenario, to_toml

    sc = load_scenario(None, ['federation.faults=[{client = 1, phase = "release", kind = "timeout"}]'])
    text = to_toml(sc.to_dict())
    tomllib.loads(text)  # valid TOML
    path = tmp_path / "back.toml"
    path.write_text(text)
    back = load_scenario(path, [])
    assert back.to_dict() == sc.to_dict()
