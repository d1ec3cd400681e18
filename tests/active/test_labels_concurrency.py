"""Two label imports into one store at the same time: the store keeps both sides' labels.

Each child process slows ``read_store`` down until the other child has read the store too (or a
second has passed). Without a lock both read the same old store and one write drops the other's
labels, every time; with the lock the second reads only after the first has written, so the two
never meet and the outcome does not depend on timing.
"""

import multiprocessing
import threading

import pandas as pd

from waferflow.active import labels
from waferflow.active.labels import import_labels, read_store

ROUNDS = 3
SIDES = {"alice": "wafer_id,label\nL1:1,Center\nL1:2,Loc\n", "bob": "wafer_id,label\nL2:7,Donut\nL3:4,Scratch\n"}


def _read_store_then_meet(read_store, both_read, met):
    """``read_store`` that, having read, waits up to a second for the other child to have read too."""

    def read_then_wait_for_the_other(labels_dir):
        store = read_store(labels_dir)
        try:
            both_read.wait(timeout=1)
            met.append(True)  # both were between reading and writing the store at once
        except threading.BrokenBarrierError:  # the other is held back by the lock
            met.append(False)
        return store

    return read_then_wait_for_the_other


def _import_each_round(annotator, queue, label_dirs, starts, both_read, results):
    """Child: in each round, wait for the other child, then import this side's file into that round's store."""
    original = labels.read_store
    for round_, labels_dir in enumerate(label_dirs):
        met = []
        labels.read_store = _read_store_then_meet(original, both_read[round_], met)
        starts[round_].wait()
        try:
            report = import_labels(
                labels_dir.parent / f"{annotator}.csv",
                queue,
                labels_dir,
                labels_dir.parent / "quarantine",
                annotator=annotator,
            )
            results.put((round_, annotator, report.accepted, len(report.rejects), met, None))
        except Exception as exc:  # reported to the parent, which fails the test with it
            results.put((round_, annotator, 0, 0, met, repr(exc)))


def test_concurrent_imports_into_one_store_keep_both_sides_labels(tmp_path):
    queue = tmp_path / "queue.parquet"
    pd.DataFrame(
        {
            "wafer_id": ["L1:1", "L1:2", "L2:7", "L3:4"],
            "lot_id": ["L1", "L1", "L2", "L3"],
            "slot": ["1", "2", "7", "4"],
            "round": [1, 1, 1, 1],
        }
    ).to_parquet(queue)
    label_dirs = []
    for round_ in range(ROUNDS):
        (tmp_path / f"round{round_}").mkdir()
        for annotator, text in SIDES.items():
            (tmp_path / f"round{round_}" / f"{annotator}.csv").write_text(text)
        label_dirs.append(tmp_path / f"round{round_}" / "labels")
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that already runs pyarrow threads
    starts, both_read = [ctx.Barrier(2) for _ in label_dirs], [ctx.Barrier(2) for _ in label_dirs]
    results = ctx.Queue()
    children = [
        ctx.Process(target=_import_each_round, args=(a, queue, label_dirs, starts, both_read, results), daemon=True)
        for a in SIDES
    ]  # daemon: a stuck child dies with the test run
    for child in children:
        child.start()
    try:
        outcomes = sorted(results.get(timeout=120) for _ in range(ROUNDS * len(SIDES)))
    finally:
        for child in children:
            child.join(timeout=60)
    assert [child.exitcode for child in children] == [0, 0]
    for round_, labels_dir in enumerate(label_dirs):
        store = read_store(labels_dir)
        assert sorted(zip(store["wafer_id"], store["annotator"])) == [
            ("1", "alice"),
            ("2", "alice"),
            ("4", "bob"),
            ("7", "bob"),
        ], f"round {round_}"
        # (side, accepted, rejected, met the other between read and write, error)
        assert [o[1:] for o in outcomes if o[0] == round_] == [
            ("alice", 2, 0, [False], None),
            ("bob", 2, 0, [False], None),
        ], f"round {round_}"
