"""Server-side handling of client replies (real Flower Message objects) and pooling."""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, Metadata, MetricRecord, RecordDict

from fedsim.strategies.pooled import ClientRelease, combine_scores, fit_pooled, score_locally
from fedsim.strategies.messaging import parse_replies


def _meta(src: int) -> Metadata:
    return Metadata(run_id=1, message_id=f"m{src}", src_node_id=src, dst_node_id=0, reply_to_message_id="q",
                    group_id="release-1", created_at=0.0, ttl=60.0, message_type="query.release")


def _release(src: int, pid: int) -> Message:
    x = np.full((3, 2), pid, np.float32)
    content = RecordDict({
        "release": ArrayRecord({"x_train": Array(x), "y_train": Array(np.arange(3))}),
        "info": MetricRecord({"partition-id": pid, "n-train": 3, "n-query": 1, "label-histogram": [1, 1, 1],
                              "extract-s": 0.1, "anonymize-s": 0.0}),
    })
    return Message(content, metadata=_meta(src))


def test_replies_split_into_releases_and_failures():
    replies = [
        _release(11, 1),
        _release(10, 0),
        Message(RecordDict({"error": ConfigRecord({"partition-id": 2, "message": "DatasetError: gone"})}),
                metadata=_meta(12)),
        Message(error=Error(code=2, reason="ClientApp exception"), metadata=_meta(13)),
    ]
    releases, failures = parse_replies(replies, node_ids=[10, 11, 12, 13, 14])
    assert [r.partition_id for r in releases] == [0, 1]
    assert releases[1].x_train[0, 0] == 1.0
    by_node = {f["node_id"]: f for f in failures}
    assert by_node[12]["id"] == 2 and "DatasetError" in by_node[12]["error"]
    assert by_node[13]["id"] is None and "ClientApp exception" in by_node[13]["error"]
    assert "no reply" in by_node[14]["error"]


def test_client_side_scoring_matches_server_side_prediction():
    rng = np.random.default_rng(0)
    centers = np.eye(4, dtype=np.float32) * 10

    def client(pid: int, n: int):
        y = rng.integers(0, 4, n)
        return centers[y] + rng.normal(size=(n, 4)).astype(np.float32), y

    releases = [ClientRelease(pid, *client(pid, 40)) for pid in range(2)]
    fitted, seconds = fit_pooled(releases, {"knn": {"k": 3}})
    queries = {0: client(0, 10), 1: client(1, 30)}
    states = {"knn": fitted["knn"].get_state()}
    scores = {pid: {"n": len(qy), "correct": score_locally(states, {"knn": {"k": 3}}, q, qy)}
              for pid, (q, qy) in queries.items()}
    for pid, (q, qy) in queries.items():
        assert scores[pid]["correct"]["knn"] == int((fitted["knn"].predict(q) == qy).sum())
    overall, per_client = combine_scores(scores, ["knn"])
    assert abs(overall["knn"] - (per_client[0]["knn"] * 10 + per_client[1]["knn"] * 30) / 40) < 1e-12
    assert overall["knn"] > 0.9 and seconds["knn"] >= 0
