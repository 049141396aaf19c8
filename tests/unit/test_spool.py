"""The spool's ids only grow, so a cursor never skips a message after the spool empties."""

from pathlib import Path

from collector.spool import Spool


def test_ids_are_not_reused_after_the_spool_empties(tmp_path: Path):
    spool = Spool(tmp_path / "s.db")
    spool.append([("t", b"1", 0), ("t", b"2", 0)])
    last = spool.head(10)[-1][0]
    spool.remove_through(last)
    assert spool.depth == 0
    spool.append([("t", b"3", 0)])
    assert [bytes(p) for _, _, p, _ in spool.head(10, after_id=last)] == [b"3"]
    spool.close()


def test_survives_reopening(tmp_path: Path):
    spool = Spool(tmp_path / "s.db")
    spool.append([("t", b"x", 5)])
    spool.close()
    again = Spool(tmp_path / "s.db")
    assert again.depth == 1 and again.oldest_ms() == 5
    again.close()
