"""Atomic writes: a failed or killed write leaves the old file; concurrent writers leave one whole file."""

import multiprocessing as mp
import os
import stat

import numpy as np
import pytest

from tests.conftest import disc
from waferflow.data.records import WaferRecord, read_records, write_records
from waferflow.fileio import atomic_path, write_json, write_text


def test_a_write_that_fails_midway_leaves_the_previous_file_and_no_temp(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"macro_f1": 0.7})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"macro_f1": 0.')  # half written, then the writer dies
            raise RuntimeError("killed")
    assert target.read_text() == '{\n  "macro_f1": 0.7\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_outputs_get_the_usual_file_mode_and_a_folder_is_refused(tmp_path):
    write_text(tmp_path / "a.txt", "x")
    mode = stat.S_IMODE((tmp_path / "a.txt").stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # not mkstemp's private 0600
    with pytest.raises(IsADirectoryError, match="is a folder"):
        write_text(tmp_path, "x")


def _write_many(path, barrier, seed):
    rng = np.random.default_rng(seed)  # random fails: the tables differ in size and do not compress away
    records = [
        WaferRecord(
            die_grid=(disc(40, 40) * rng.integers(1, 3, (40, 40))).astype(np.uint8), lot_id=f"W{seed}", wafer_id=str(i)
        )
        for i in range(200 * seed)
    ]
    barrier.wait()
    for _ in range(30):
        write_records(records, path)


def test_two_processes_writing_one_table_leave_one_whole_table_and_readers_never_see_half(tmp_path):
    """In-place writes left an unreadable Parquet in 5 of 10 trials with both writers exiting 0."""
    path = tmp_path / "ingested.parquet"
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(3)
    procs = [ctx.Process(target=_write_many, args=(path, barrier, seed)) for seed in (1, 2)]
    for p in procs:
        p.start()
    barrier.wait()
    reads, torn = 0, []
    while any(p.is_alive() for p in procs):  # read while they write
        if path.exists():
            try:
                read_records(path)
                reads += 1
            except Exception as exc:  # noqa: BLE001 - what a reader of a half-written file gets
                torn.append(type(exc).__name__)
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert not torn, f"{len(torn)} reads saw a half-written table ({sorted(set(torn))}); {reads} whole"
    records = read_records(path)
    lots = {r.lot_id for r in records}
    assert len(lots) == 1 and len(records) == 200 * int(lots.pop()[1:])  # one writer's table, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ingested.parquet"]
