"""The typed protocol and the server's handling of replies (real Flower Message objects):
every malformed reply is rejected whole with its reason; failures are recorded once."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Error, Message, Metadata

from fedsim import classifiers
from fedsim.clients import faults
from fedsim.config import FaultConfig
from fedsim.protocol import Limits, ProtocolError, ReleaseReply, Request, ScoresReply, StatsReply, error_content
from fedsim.strategies.audit import AuditLog
from fedsim.strategies.base import score_on_server
from fedsim.strategies.federation import Federation, FederationError, majority


@pytest.fixture(autouse=True)
def _run_identity(monkeypatch):
    """Messages made outside a running ServerApp need a run id, as inside one."""
    from flwr.supercore.task_identity import TaskIdentity

    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 1)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)


def _meta(src: int, phase: str = "release") -> Metadata:
    return Metadata(run_id=1, message_id=f"m{src}", src_node_id=src, dst_node_id=0, reply_to_message_id="q",
                    group_id=f"{phase}-0-0", created_at=0.0, ttl=60.0, message_type="train.release")


def _release(pid: int, n: int = 6, dim: int = 4, queries: bool = True) -> ReleaseReply:
    rng = np.random.default_rng(pid)
    y = np.arange(n, dtype=np.int64) % 3
    return ReleaseReply(partition_id=pid, x_train=rng.normal(size=(n, dim)).astype(np.float32), y_train=y,
                        n_train=n, n_query=2, num_classes=3, label_histogram=np.bincount(y, minlength=3),
                        y_query=np.array([0, 1]) if queries else None,
                        x_query_domains=[rng.normal(size=(2, dim)).astype(np.float32)] if queries else [],
                        metrics={"reidentification_rate": 0.5}, timings={"extract_s": 0.1})


def _message(src: int, reply: ReleaseReply | None = None, content=None) -> Message:
    return Message(content if content is not None else reply.to_content(), metadata=_meta(src))


def test_request_and_release_round_trip():
    req = Request("release", 3, "gaussian", {"noise_scale": 0.5}, round=2, batch_size=7, send_queries=False,
                  arrays={"shared": {"mean": np.zeros(4)}})
    back = Request.from_message(req.to_message(42))
    assert (back.phase, back.index, back.method, back.params, back.round, back.batch_size, back.send_queries) == \
        ("release", 3, "gaussian", {"noise_scale": 0.5}, 2, 7, False)
    assert req.to_message(42).metadata.message_type == "train.release"
    rel = _release(1)
    got = ReleaseReply.from_content(rel.to_content())
    assert np.array_equal(got.x_train, rel.x_train) and np.array_equal(got.y_query, rel.y_query)
    assert got.metrics == rel.metrics and got.n_train == 6
    got.validate(Limits(max_rows=100, dim=4, num_classes=3), want_queries=True)


@pytest.mark.parametrize("how, reason", [
    ("nan", "NaN"), ("dim", "dimension"), ("missing", "missing"), ("labels", "labels must be in"),
    ("negative_labels", "labels must be in"), ("rows", "rows; at most"), ("label_length", "labels of shape"),
])
def test_every_malformed_reply_is_rejected_with_its_reason(how, reason):
    content = faults.corrupt(_release(0).to_content(), FaultConfig(kind="malformed", how=how))
    with pytest.raises(ProtocolError, match=reason):
        ReleaseReply.from_content(content).validate(Limits(max_rows=1000, dim=4, num_classes=3), want_queries=True)


def test_size_limits_and_query_checks():
    limits = Limits(max_rows=5, dim=4, num_classes=3)
    with pytest.raises(ProtocolError, match="max_release_rows = 5"):
        _release(0, n=6).validate(limits, want_queries=True)
    with pytest.raises(ProtocolError, match="missing transformed queries"):
        _release(0, queries=False).validate(Limits(max_rows=100), want_queries=True)
    with pytest.raises(ProtocolError, match="not asked for"):
        _release(0).validate(Limits(max_rows=100), want_queries=False)
    grown = Limits(max_rows=100, release_rows=lambda n: 3 * n)  # a synthesizer asked for more samples
    _release(0, n=6).validate(grown, want_queries=True)
    stats = StatsReply(0, {"n": np.array([5]), "sum": np.zeros(4), "outer": np.zeros((4, 3))})
    with pytest.raises(ProtocolError, match="one dimension"):
        StatsReply.from_content(stats.to_content()).validate(Limits(max_rows=100))
    scores = ScoresReply(0, 4, {"knn": [5]})
    with pytest.raises(ProtocolError, match="outside"):
        ScoresReply.from_content(scores.to_content()).validate(["knn"], 1, 4)


def test_federation_records_each_failure_once_and_leaves_the_client_out():
    fed = Federation([10, 11, 12, 13, 14, 15], quorum=2, timeout=5)
    replies = [
        _message(10, _release(0)),
        _message(11, _release(1)),
        _message(12, content=error_content(2, "DatasetError: gone")),
        Message(error=Error(code=2, reason="ClientApp exception"), metadata=_meta(13)),
        _message(14, _release(1)),  # claims another node's partition
    ]  # node 15: silent
    fed.messages(Request("release", 0, "none", {}))  # every node asked
    ok = fed.accept(replies, "release", 0, 0)
    assert sorted(r.partition_id for r in ok.values()) == [0, 1]
    assert fed.active == [10, 11]
    reasons = {f["node_id"]: f["reason"] for f in fed.failures}
    assert "DatasetError" in reasons[12] and "ClientApp exception" in reasons[13]
    assert "sent by two nodes" in reasons[14] and "no reply" in reasons[15]
    assert [m.metadata.dst_node_id for m in fed.messages(Request("release", 1, "none", {}))] == [10, 11]
    assert reasons[12] and next(f["client"] for f in fed.failures if f["node_id"] == 12) == 2  # its own word
    with pytest.raises(FederationError, match="below federation.min_clients = 2"):  # node 11 changed pid
        fed.accept([_message(10, _release(0)), _message(11, _release(3))], "release", 1, 0)
    assert "serves partition 1" in fed.failures[-1]["reason"] and fed.failures[-1]["client"] == 1
    assert len(fed.failures) == 5  # once each


def test_majority_fixes_dimension_without_trusting_one_client():
    assert majority([(0, 256), (1, 255), (2, 256)]) == 256
    assert majority([(1, 8), (0, 4)]) == 4  # a tie goes to the lowest partition id
    assert majority([]) is None


def test_server_scores_equal_client_scores():
    rng = np.random.default_rng(0)
    centers = np.eye(4, dtype=np.float32) * 10
    y = rng.integers(0, 4, 80)
    X = centers[y] + rng.normal(size=(80, 4)).astype(np.float32)
    knn = classifiers.create("knn", k=3).fit(X, y)
    q_y = rng.integers(0, 4, 30)
    q = centers[q_y] + rng.normal(size=(30, 4)).astype(np.float32)
    rebuilt = classifiers.create("knn", k=3).set_state(knn.get_state())
    scores = score_on_server({"knn": knn}, {0: ([q], q_y)})
    assert scores.correct[0]["knn"] == classifiers.count_correct(rebuilt, [q], q_y)
    assert scores.n_query[0] == 30 and scores.correct[0]["knn"][0] > 25
    # many clients and two domains, scored in one batch: each client's counts as if alone
    shifted = q + rng.normal(scale=4.0, size=q.shape).astype(np.float32)
    parts = {3: slice(0, 12), 1: slice(12, 12), 7: slice(12, 30)}  # client 1 has no queries
    batch = score_on_server({"knn": knn}, {p: ([q[s], shifted[s]], q_y[s]) for p, s in parts.items()})
    for p, s in parts.items():
        assert batch.correct[p]["knn"] == classifiers.count_correct(rebuilt, [q[s], shifted[s]], q_y[s])
        assert batch.n_query[p] == len(q_y[s])
    assert batch.infer_s[1]["knn"] == 0 and batch.infer_s[7]["knn"] > batch.infer_s[3]["knn"] > 0


def test_audit_counts_bytes_per_client():
    log = AuditLog()
    msg = _message(10, _release(0))
    log.record(msg, "client->server", 10, {"phase": "release", "index": 0, "round": 0})
    traffic = log.traffic({10: 0})
    c = traffic["clients"]["0"]
    assert c["sent_bytes"] > 6 * 4 * 4 and c["received_bytes"] == 0
    assert c["messages"][0]["phase"] == "release" and traffic["total_sent_bytes"] == c["sent_bytes"]
    names = {a["name"] for a in log.records[0]["arrays"]}
    assert {"release.x_train", "release.y_train", "release.y_query", "release.x_query.0"} <= names


class _SlowGrid:
    """Answers each pushed message after two polls; records how many were in flight."""

    def __init__(self) -> None:
        self.in_flight: dict[str, int] = {}
        self.most = 0

    def push_messages(self, messages):
        ids = [f"id-{m}" for m in messages]
        self.in_flight.update(dict.fromkeys(ids, 0))
        self.most = max(self.most, len(self.in_flight))
        return ids

    def pull_messages(self, ids):
        from types import SimpleNamespace

        done = []
        for i in list(ids):
            self.in_flight[i] += 1
            if self.in_flight[i] == 2:
                del self.in_flight[i]
                done.append(SimpleNamespace(metadata=SimpleNamespace(reply_to_message_id=i)))
        return done


def test_windowed_grid_keeps_at_most_window_messages_in_flight():
    from fedsim.strategies.window import WindowedGrid

    inner = _SlowGrid()
    replies = WindowedGrid(inner, window=3).send_and_receive(range(10), timeout=30)
    assert sorted(r.metadata.reply_to_message_id for r in replies) == sorted(f"id-{i}" for i in range(10))
    assert inner.most == 3
    late = WindowedGrid(_SlowGrid(), window=2).send_and_receive(range(10), timeout=0)  # the round's time is up
    assert late == []
