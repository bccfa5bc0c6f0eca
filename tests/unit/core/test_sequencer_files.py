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
    compacted = None
    for change in build(OPS, [1000] * len(OPS)):
        logic.on_batch([[change]])
        logic.on_eof()
        snapshots.append(logic.snapshot())
        states.append(_contents(logic.core))
        if files.compacting is not None and compacted is None:
            compacted = files.compacting[1]
            files.adopt(wait=True)  # as if the merging process were done by the next snapshot
    files.adopt(wait=True)
    assert all(s[:1] == JOURNALED for s in snapshots)
    assert compacted is not None and compacted >= MIN_BASE_EVERY
    bases = sorted(int(p.name.split(".")[0]) for p in tmp_path.glob("*.base"))
    assert bases[0] == 1 and compacted in bases  # merged beside the flow, the first base kept
    assert sorted(p.suffix for p in tmp_path.iterdir()).count(".delta") == len(snapshots) - 1
    for i in (len(snapshots) - 1, len(snapshots) - 3, compacted - 2):  # newest, not yet committed, before the merge
        resumed = SequencerLogic(POLICY, [], snapshots[i], files)
        assert _contents(resumed.core) == states[i]
    assert max(int(p.name.split(".")[0]) for p in tmp_path.iterdir()) == compacted - 1  # later ones gone


def test_a_merged_base_equals_its_chain(tmp_path: Path) -> None:
    files = CheckpointFiles(tmp_path)
    logic = SequencerLogic(POLICY, [], None, files)
    for change in build(OPS[:10], [1000] * 10):
        logic.on_batch([[change]])
        logic.on_eof()
        logic.snapshot()
    files.adopt(wait=True)  # one the snapshots started
    files.compact_beside(logic.gen)
    assert files.adopt(wait=True) == (logic.gen, (tmp_path / f"{logic.gen:012d}.base").stat().st_size)
    assert len(files.read(logic.gen)) == 1  # the merged base alone
    assert _contents(SequencerLogic(POLICY, [], JOURNALED + str(logic.gen).encode(), files).core) == _contents(logic.core)


def test_a_missing_file_stops_the_resume(tmp_path: Path) -> None:
    files = CheckpointFiles(tmp_path)
    logic = SequencerLogic(POLICY, [], None, files)
    for change in build(OPS[:3], [1000] * 3):
        logic.on_batch([[change]])
        logic.on_eof()
        last = logic.snapshot()
    sorted(tmp_path.iterdir())[1].unlink()
    with pytest.raises(FileNotFoundError):
        SequencerLogic(POLICY, [], last, files)
