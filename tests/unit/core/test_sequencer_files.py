"""The sequencer's Bytewax logic with incremental snapshots: the key's snapshot names a checkpoint file, and a
resume from any snapshot Bytewax still holds carries on exactly where that snapshot stood."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataflows.flows.checkpoints import MIN_BASE_EVERY, CheckpointFiles
from dataflows.flows.partitioned import JOURNALED, SequencerLogic
from tests.unit.core.test_core_properties import POLICY, build
from tests.unit.core.test_sequencer_checkpoints import _contents

OPS = [(("erp", "customers"), i, {"legal_name": f"Acme {i}"}) for i in range(1, 30)]


def test_every_snapshot_resumes_where_it_stood_and_later_files_go(tmp_path: Path) -> None:
    files = CheckpointFiles(tmp_path)
    logic = SequencerLogic(POLICY, [], None, files)
    snapshots, states = [], []
    for change in build(OPS, [1000] * len(OPS)):
        logic.on_batch([change])
        logic.on_eof()
        snapshots.append(logic.snapshot())
        states.append(_contents(logic.core))
    assert all(s[:1] == JOURNALED for s in snapshots)
    kinds = sorted(p.suffix for p in tmp_path.iterdir())
    assert kinds.count(".base") >= 2 and kinds.count(".delta") >= MIN_BASE_EVERY  # compacted along the way
    for i in (len(snapshots) - 1, len(snapshots) - 3):  # the newest, and one Bytewax had not committed yet
        resumed = SequencerLogic(POLICY, [], snapshots[i], files)
        assert _contents(resumed.core) == states[i]
    assert max(int(p.name.split(".")[0]) for p in tmp_path.iterdir()) == len(snapshots) - 2  # later ones gone


def test_a_missing_file_stops_the_resume(tmp_path: Path) -> None:
    files = CheckpointFiles(tmp_path)
    logic = SequencerLogic(POLICY, [], None, files)
    for change in build(OPS[:3], [1000] * 3):
        logic.on_batch([change])
        logic.on_eof()
        last = logic.snapshot()
    sorted(tmp_path.iterdir())[1].unlink()
    with pytest.raises(FileNotFoundError):
        SequencerLogic(POLICY, [], last, files)
