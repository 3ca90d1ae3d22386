"""The pieces of a deployment that need no running Flower process: a SuperNode's node
config (validation, what it changes in the scenario, a party's own image folder), the
TLS certificates and node authentication keys, the results comparison across engines,
and ``fedsim deploy`` refusing bad input before anything starts.  A few seconds."""

from __future__ import annotations

import json
import stat
import time

import numpy as np
import pytest
from PIL import Image

from fedsim.cli import main
from fedsim.clients.keys import NODE_KEY, write_key_file
from fedsim.clients.node_config import (OWN_DATA, NodeConfigError, format_node_config, localize,
                                        parse_node_config)
from fedsim.config import load_scenario
from fedsim.report.equality import deterministic, differences


def test_node_config_is_validated_with_one_error_naming_the_key(tmp_path):
    ok = parse_node_config({"partition-id": 1, "num-partitions": 3, "data-root": str(tmp_path), "device": "cpu",
                            "threads": 2})
    assert (ok.partition_id, ok.num_partitions, ok.data_root, ok.device, ok.threads) == (1, 3, str(tmp_path), "cpu", 2)
    bad = [
        ({"num-partitions": 3}, "no partition-id"),
        ({"partition-id": 3, "num-partitions": 3}, "partition-id = 3: must be < num-partitions = 3"),
        ({"partition-id": "0", "num-partitions": 3}, "partition-id = '0': must be an integer"),
        ({"partition-id": 0, "num-partitions": 1, "data_root": "/x"}, "'data_root' is not known; allowed: "),
        ({"partition-id": 0, "num-partitions": 1, "data-root": str(tmp_path / "nope")}, "no such folder"),
        ({"partition-id": 0, "num-partitions": 1, "data-root": str(tmp_path), "data-folder": str(tmp_path)},
         "not both"),
        ({"partition-id": 0, "num-partitions": 1, "device": "tpu"}, "must be one of auto, cpu, cuda"),
        ({"partition-id": 0, "num-partitions": 1, NODE_KEY: str(tmp_path / "missing.key")}, "no such file"),
        ({"partition-id": 0, "num-partitions": 1, "extractor-weights": 3}, "must be a quoted path"),
    ]
    for config, message in bad:
        with pytest.raises(NodeConfigError, match="^node config") as err:
            parse_node_config(config)
        assert message in str(err.value), (config, str(err.value))


def test_node_config_text_is_read_back_by_flowers_own_parser(tmp_path):
    from flwr.common.config import parse_config_args

    values = {"partition-id": 2, "num-partitions": 3, "data-root": str(tmp_path / "a folder"), "threads": 1}
    assert parse_config_args([format_node_config(values)]) == values
    with pytest.raises(NodeConfigError, match="single quote"):
        format_node_config({"data-root": "/it's"})


def test_localize_changes_only_what_is_local_to_the_party(tmp_path):
    scenario = load_scenario("scenarios/quickstart.toml")
    assert localize(scenario, parse_node_config({"partition-id": 0, "num-partitions": 4})) is scenario
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"x")
    node = parse_node_config({"partition-id": 0, "num-partitions": 4, "data-root": str(tmp_path),
                              "extractor-weights": str(weights), "device": "cpu", "cache-dir": str(tmp_path / "c")})
    local = localize(scenario, node)
    assert (local.data.root, local.extractor.weights, local.extractor.device, local.extractor.cache_dir) == (
        str(tmp_path), str(weights), "cpu", str(tmp_path / "c"))
    assert local.federation == scenario.federation and local.anonymizers == scenario.anonymizers
    own = localize(scenario, parse_node_config({"partition-id": 0, "num-partitions": 4, "data-folder": str(tmp_path)}))
    assert (own.data.dataset, own.data.root, own.partition.method) == ("imagefolder", str(tmp_path), OWN_DATA)


def _image_folder(root, counts: dict[str, dict[str, int]]) -> None:
    rng = np.random.default_rng(0)
    for split, per_class in counts.items():
        for cls, n in per_class.items():
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / split / cls / f"{i}.png")


def test_a_party_with_its_own_image_folder_uses_all_of_it(tmp_path, write_scenario):
    """data-folder: the node's training and query images are its whole folder, whatever its
    partition id; the scenario is validated once per node and run, then kept in context.state."""
    from flwr.app import Context, RecordDict

    from fedsim.clients.client_app import SCENARIO_STATE, Node

    folder = tmp_path / "party"
    _image_folder(folder, {"train": {"cat": 4, "dog": 3}, "test": {"cat": 2, "dog": 1}})
    path = write_scenario('name = "own"\n[federation]\nnum_clients = 3\n[extractor]\ncache = false\n')
    context = Context(run_id=5, node_id=1, node_config={"partition-id": 2, "num-partitions": 3,
                                                        "data-folder": str(folder)},
                      state=RecordDict(), run_config={"scenario": str(path)})
    node = Node(context, None, None)
    data = node.data()
    assert (node.pid, data.partition_id, data.n_train, data.n_query) == (2, 2, 7, 3)
    assert data.label_histogram.tolist() == [4, 3] and data.x_train.shape == (7, 256)
    assert SCENARIO_STATE in context.state
    path.write_text("not toml at all")  # a later message of the run uses the stored scenario
    assert Node(context, None, None).scenario.data.root == str(folder)
    context.run_id = 6  # a new run reads its scenario again
    with pytest.raises(Exception, match="not valid TOML"):
        Node(context, None, None)


def test_certificates_are_signed_by_the_ca_for_the_superlinks_addresses(tmp_path):
    import ipaddress

    from cryptography import x509

    from fedsim.deploy.certs import write_certificates

    certs = write_certificates(tmp_path, hosts=["127.0.0.1", "localhost", "link.example.org"])
    ca = x509.load_pem_x509_certificate(certs.ca.read_bytes())
    cert = x509.load_pem_x509_certificate(certs.cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "link.example.org"]
    assert stat.S_IMODE(certs.key.stat().st_mode) == 0o600
    assert not list(tmp_path.glob("*ca*.key"))  # the CA's key is not kept
    with pytest.raises(ValueError, match="hosts"):
        write_certificates(tmp_path / "x", hosts=[])


def test_node_keys_are_what_flower_loads(tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key
    from flwr.cli.supernode.register import try_load_public_key

    from fedsim.deploy.nodeauth import write_node_keys

    keys = write_node_keys(tmp_path, "party-a")
    private = load_ssh_private_key(keys.private.read_bytes(), None)  # what flower-supernode does
    assert isinstance(private, ec.EllipticCurvePrivateKey) and private.curve.name == "secp384r1"
    assert try_load_public_key(keys.public)  # what flwr supernode register does
    assert stat.S_IMODE(keys.private.stat().st_mode) == 0o600


def test_results_comparison_ignores_timings_and_nothing_else():
    a = {"engine": "simulation", "accuracy": {"knn": 0.9}, "timings": {"collect_s": 1.0},
         "clients": [{"id": 0, "embedding_cache": "miss", "timings": {"extract_s": 2.0}, "reid": float("nan")}],
         "traffic": {"clients": {"0": {"sent_bytes": 10, "received_bytes": 5, "messages": 2}}, "total_sent_bytes": 10}}
    b = json.loads(json.dumps(a))
    b.update(engine="flwr-run", timings={"collect_s": 9.0})
    b["clients"][0].update(embedding_cache="hit", reid=float("nan"))
    b["traffic"]["clients"]["0"]["sent_bytes"] = 12
    assert differences(a, b) == [] and deterministic(a)["traffic"] == {"clients": {"0": {"received_bytes": 5,
                                                                                         "messages": 2}}}
    b["accuracy"]["knn"] = 0.9000001
    b["traffic"]["clients"]["0"]["messages"] = 3
    assert differences(a, b) == ["results.accuracy.knn: 0.9 vs 0.9000001",
                                 "results.traffic.clients.0.messages: 2 vs 3"]


def test_deploy_refuses_bad_input_before_starting_anything(tmp_path, capsys):
    t0 = time.perf_counter()
    assert main(["deploy", "local", "scenarios/quickstart.toml", "--clients", "0"]) == 2
    assert "--clients 0: must be >= 1" in capsys.readouterr().err
    code = main(["deploy", "local", "scenarios/quickstart.toml", "--output-dir", str(tmp_path),
                 "--node-config", f"data-root='{tmp_path / 'missing'}'"])
    err = capsys.readouterr().err
    assert code == 2 and "node config data-root" in err and "no such folder on this machine" in err, err
    assert main(["deploy", "local", "scenarios/quickstart.toml", "--node-config", "partition-id=1"]) == 2
    assert "set per SuperNode by fedsim deploy local" in capsys.readouterr().err
    assert main(["deploy", "local", str(tmp_path / "none.toml")]) == 2
    assert "no such scenario file" in capsys.readouterr().err
    assert time.perf_counter() - t0 < 30 and not list(tmp_path.iterdir())  # no process, no run folder


def test_check_node_and_key_helpers(tmp_path, capsys):
    key = tmp_path / "federation.key"
    write_key_file(key)
    assert main(["deploy", "check-node", f"partition-id=0 num-partitions=2 {NODE_KEY}='{key}'"]) == 0
    assert "node config ok: client 0 of 2" in capsys.readouterr().out
    assert main(["deploy", "check-node", "partition-id=2 num-partitions=2"]) == 2
    assert "partition-id = 2: must be < num-partitions = 2" in capsys.readouterr().err
    assert main(["deploy", "certs", str(tmp_path / "certs"), "--host", "10.0.0.5"]) == 0
    assert main(["deploy", "keys", str(tmp_path / "keys"), "--name", "party-a"]) == 0
    assert (tmp_path / "certs" / "ca.crt").is_file() and (tmp_path / "keys" / "party-a.pub").is_file()
