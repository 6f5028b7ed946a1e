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
        assert disk.log_replay.written_ranges == ((0x300000, 4096),) * 3


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


# -- entries written by the test (tests/vhdx/logbuilder.py), replayed by vhdkit and by qemu --------

def _crafted(tmp_path, place):
    """A qemu-made image with block 0 written, plus log entries from ``place(img, guid, size)``."""
    import uuid

    from ..conftest import require_tool, run
    from ..interop.qemu_images import Write, make_qemu_vhdx
    from .logbuilder import set_log_guid

    require_tool("qemu-img")
    require_tool("qemu-io")
    path = tmp_path / "crafted.vhdx"
    make_qemu_vhdx(path, 64 << 20, block_size=1 << 20,
                   writes=[Write(0, 1 << 20, 0x5A), Write(5 << 20, 1 << 20, 0x6B)])
    img = Image(path)
    guid = uuid.uuid4()
    set_log_guid(img, guid)
    place(img, guid, len(img.data))
    img.save()
    twin = tmp_path / "qemu-replayed.vhdx"
    twin.write_bytes(path.read_bytes())
    run("qemu-img", "check", "-r", "all", twin, check=False)
    return path, twin


def _payload_offset(img: Image, block: int) -> int:
    return (img.bat_entries(block + 1)[block] >> 20) << 20


def _assert_replays_like_qemu(path, twin):
    from ..conftest import run

    with vhdkit.open(path) as disk:
        assert disk.log_replay.state == "replayed_in_memory"
        in_memory = disk.pread(0, disk.size)
    with vhdkit.open(path, "r+") as disk:
        assert disk.log_replay.state == "replayed"
    ours, theirs = path.read_bytes(), twin.read_bytes()
    assert len(ours) == len(theirs)
    assert ours[0x30000:] == theirs[0x30000:], "replay differs from qemu's after the headers"
    assert run("qemu-img", "check", path, check=False).returncode == 0
    with vhdkit.open(path) as disk:
        assert disk.pread(0, disk.size) == in_memory
    return in_memory


def test_zero_and_data_descriptors_replay_as_qemu_replays_them(tmp_path):
    from .logbuilder import Desc, build_entry, put_entry

    def place(img, guid, size):
        block0 = _payload_offset(img, 0)
        bat = img.bat_offset()
        sector = bytearray(img.data[bat : bat + 4096])
        struct.pack_into("<Q", sector, 5 * 8, 2)  # block 5: FULLY_PRESENT -> ZERO
        descs = [Desc(block0, None, 8192), Desc(bat, bytes(sector))]  # zero block 0's first 8 KiB
        put_entry(img, 0, build_entry(1000, guid, 0, descs, size, size))

    path, twin = _crafted(tmp_path, place)
    content = _assert_replays_like_qemu(path, twin)
    assert content[:8192] == bytes(8192) and content[8192 : 1 << 20] == b"\x5a" * ((1 << 20) - 8192)
    assert content[5 << 20 : 6 << 20] == bytes(1 << 20)


def test_an_entry_wrapping_round_the_end_of_the_log_replays(tmp_path):
    from .logbuilder import Desc, build_entry, log_region, put_entry

    def place(img, guid, size):
        _, length = log_region(img)
        block0 = _payload_offset(img, 0)
        data = b"\xee" * 4096
        position = length - 4096  # descriptor sector last in the ring, data sector first
        put_entry(img, position, build_entry(77, guid, position, [Desc(block0 + 4096, data)], size, size))

    path, twin = _crafted(tmp_path, place)
    content = _assert_replays_like_qemu(path, twin)
    assert content[4096:8192] == b"\xee" * 4096


def test_more_descriptors_than_fit_in_the_first_sector(tmp_path):
    """127 zero descriptors and a data one: three descriptor sectors' worth of layout (2.3.1).

    qemu is no oracle here: its vhdx_log_read_sectors() reads every sector of a multi-sector
    descriptor area into the same buffer, so qemu refuses such entries ("Invalid argument") -
    it never writes more than a few descriptors itself. The expected bytes follow from the spec.
    """
    from ..conftest import run
    from .logbuilder import Desc, build_entry, put_entry

    def place(img, guid, size):
        block0 = _payload_offset(img, 0)
        descs = [Desc(block0 + i * 8192, None, 4096) for i in range(127)]  # 127 > 126
        descs.append(Desc(block0 + 4096, b"\x99" * 4096))
        put_entry(img, 0, build_entry(5, guid, 0, descs, size, size))

    path, _ = _crafted(tmp_path, place)
    expected = bytearray(b"\x5a" * (1 << 20))
    for i in range(127):
        expected[i * 8192 : i * 8192 + 4096] = bytes(4096)
    expected[4096:8192] = b"\x99" * 4096
    with vhdkit.open(path) as disk:
        assert disk.log_replay.descriptors == 128
        assert disk.pread(0, 1 << 20) == expected
    with vhdkit.open(path, "r+"):
        pass
    assert run("qemu-img", "check", path, check=False).returncode == 0  # a clean image afterwards
    with vhdkit.open(path) as disk:
        assert disk.log_replay.state == "empty" and disk.pread(0, 1 << 20) == expected


def test_a_two_entry_sequence_replays_in_order(tmp_path):
    from .logbuilder import Desc, build_entry, put_entry

    def place(img, guid, size):
        block0 = _payload_offset(img, 0)
        first = build_entry(41, guid, 0, [Desc(block0, b"\x01" * 4096)], size, size)
        put_entry(img, 0, first)
        second = build_entry(42, guid, 0, [Desc(block0, b"\x02" * 4096)], size, size)  # same sector later
        put_entry(img, len(first), second)

    path, twin = _crafted(tmp_path, place)
    content = _assert_replays_like_qemu(path, twin)
    assert content[:4096] == b"\x02" * 4096


# -- hostile entries: a log must not fill the disk nor name an absurd file size -------------------

def _dirty(tmp_path, descs, last):
    """A small vhdkit-made VHDX whose log holds one entry with ``descs`` (LastFileOffset ``last``)."""
    import uuid

    from .logbuilder import build_entry, put_entry, set_log_guid

    path = tmp_path / "hostile.vhdx"
    vhdkit.create(path, 64 << 20).close()
    img = Image(path)
    guid = uuid.uuid4()
    set_log_guid(img, guid)
    put_entry(img, 0, build_entry(77, guid, 0, descs, len(img.data), last))
    img.save()
    return path


def test_zeroing_far_past_the_end_extends_the_file_sparsely(tmp_path):
    """A zero descriptor 8 GiB past the end of a 4 MiB file: the replay extends the file (it reads
    zeros there) instead of writing 256 MiB of zeros onto the disk."""
    from .logbuilder import Desc

    far = 8 << 30
    path = _dirty(tmp_path, [Desc(far, None, 256 << 20)], far + (256 << 20))
    with vhdkit.open(path, "r+") as disk:
        assert disk.log_replay.state == "replayed"
        assert disk.pread(0, 4096) == bytes(4096)
    st = path.stat()
    assert st.st_size == far + (256 << 20)
    assert st.st_blocks * 512 < 16 << 20, f"{st.st_blocks * 512} bytes allocated: zeros were written"
    assert vhdkit.check(path).verdict in ("clean", "leaks")


@pytest.mark.parametrize("where", ["descriptor", "last_file_offset"])
def test_an_entry_past_the_largest_vhdx_is_refused_naming_it(tmp_path, where):
    from vhdkit.vhdx import layout as L

    from .logbuilder import Desc

    huge = 1 << 47  # 128 TiB: no VHDX (64 TiB of payload at most) is that large
    descs = [Desc(huge - 4096, None, 4096)] if where == "descriptor" else [Desc(3 << 20, bytes(4096))]
    path = _dirty(tmp_path, descs, huge)
    before = path.read_bytes()
    for mode in ("r", "r+"):
        with pytest.raises(CorruptImageError, match="log entry 0x4d reaches .* past the largest file a VHDX can be") as e:
            vhdkit.open(path, mode).close()
        assert e.value.structure == "log entry" and e.value.expected == f"<= {L.MAX_FILE_SIZE:#x}"
    assert path.read_bytes() == before  # refused before anything was written


def test_repair_cuts_the_leak_a_far_replay_leaves(tmp_path):
    """The replay extends the file to the entry's LastFileOffset; nothing references that space,
    so the same repair goes on to cut it: one `check --repair` leaves a clean, small file."""
    from .logbuilder import Desc

    far = 8 << 30
    path = _dirty(tmp_path, [Desc(far, None, 256 << 20)], far + (256 << 20))
    report = vhdkit.check(path, repair=True)
    assert report.verdict == "clean", report.as_dict()
    assert any(r.startswith("replayed the log") for r in report.repairs)
    assert any(r.startswith("cut ") for r in report.repairs)
    assert path.stat().st_size < 16 << 20
