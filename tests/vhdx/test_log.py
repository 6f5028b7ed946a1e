"""[MS-VHDX] 2.3.3 log replay rules, on Windows's own dirty log (samples/discutils).

The sample's log holds five entries at 0x0, 0x1000, 0x3000, 0x5000 and 0x7000 with consecutive
sequence numbers; the newest (0x7000) has tail 0x5000, so the active sequence is 0x5000..0x7000.
Every entry rewrites the BAT sector at 0x300000.
"""

from __future__ import annotations

import hashlib
import struct

import pytest

import vhdkit
from vhdkit.errors import CorruptImageError
from vhdkit.storage import LocalStore
from vhdkit.vhdx.headers import select_current_header
from vhdkit.vhdx.log import LogReader

from .patching import Image, fix_crc
from .test_samples import LOG_SAMPLE

LOG_OFFSET = 1 << 20


def entry_sequences(path) -> dict[int, int]:
    with LocalStore(path) as store:
        reader = LogReader(store, select_current_header(store).current)
        return {pos: e.sequence_number for pos in range(0, 0x8000, 0x1000) if (e := reader.entry_at(pos))}


def test_all_five_entries_are_valid_and_consecutive(sample):
    seqs = entry_sequences(sample(LOG_SAMPLE))
    assert sorted(seqs) == [0x0, 0x1000, 0x3000, 0x5000, 0x7000]
    ordered = [seqs[p] for p in sorted(seqs)]
    assert ordered == list(range(ordered[0], ordered[0] + 5))


def test_a_damaged_head_entry_falls_back_to_the_previous_complete_sequence(sample):
    path = sample(LOG_SAMPLE)
    img = Image(path)
    img.data[LOG_OFFSET + 0x7000 + 0x1800] ^= 0xFF  # inside the newest entry: its CRC fails
    img.save()
    with vhdkit.open(path) as disk:
        # Now the newest valid sequence ends at 0x5000, whose tail is 0x1000: three entries.
        assert (disk.log_replay.tail_position, disk.log_replay.head_position) == (0x1000, 0x5000)
        assert disk.log_replay.entries == 3
        assert disk.log_replay.written_ranges == [(0x300000, 4096)] * 3


def test_no_valid_entry_while_the_header_has_a_log_guid_is_corrupt(sample):
    path = sample(LOG_SAMPLE)
    img = Image(path)
    for pos in (0x0, 0x1000, 0x3000, 0x5000, 0x7000):
        img.data[LOG_OFFSET + pos : LOG_OFFSET + pos + 4] = b"LOGE"
    img.save()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    for mode in ("r", "r+"):
        with pytest.raises(CorruptImageError, match="no valid sequence") as err:
            vhdkit.open(path, mode)
        assert err.value.structure == "log" and err.value.offset == LOG_OFFSET
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before, "a failed replay changed the file"


def test_a_file_shorter_than_flushed_file_offset_is_truncated(sample):
    path = sample(LOG_SAMPLE)
    with open(path, "r+b") as f:
        f.truncate(35 << 20)  # the head entry says 36 MiB were durable
    with pytest.raises(CorruptImageError, match="truncated") as err:
        vhdkit.open(path)
    assert err.value.field == "FlushedFileOffset"


def test_log_guid_mismatch_makes_entries_invalid(sample):
    path = sample(LOG_SAMPLE)
    img = Image(path)
    for pos in (0x0, 0x1000, 0x3000, 0x5000, 0x7000):
        img.data[LOG_OFFSET + pos + 32] ^= 0x01  # LogGuid; the entry CRC then fails too, fix it
        length = struct.unpack_from("<I", img.data, LOG_OFFSET + pos + 8)[0]
        fix_crc(img.data, LOG_OFFSET + pos, length)
    img.save()
    with pytest.raises(CorruptImageError, match="no valid sequence") as err:
        vhdkit.open(path)
    assert "LogGuid" in str(err.value)


@pytest.mark.parametrize("mode", ["r", "r+"])
def test_replay_extends_the_file_to_last_file_offset(sample, mode):
    """With the head entry damaged, the active sequence ends at 0x5000, whose FlushedFileOffset is
    4 MiB and LastFileOffset 36 MiB: a file cut to 4 MiB is not truncated by the log's account,
    and replay grows it to 36 MiB (only in memory for a read-only open)."""
    path = sample(LOG_SAMPLE)
    img = Image(path)
    img.data[LOG_OFFSET + 0x7000 + 0x1800] ^= 0xFF
    img.data = img.data[: 4 << 20]
    img.save()
    with vhdkit.open(path, mode) as disk:
        assert disk.log_replay.head_position == 0x5000
        assert disk.store.size() == 36 << 20
        assert disk.pread(0, 4096) == bytes(4096)  # block 0's payload was never flushed
    assert path.stat().st_size == (36 << 20 if mode == "r+" else 4 << 20)
