"""The Store backends: local files, fsspec URLs, and the in-memory overlay used for read-only
log replay (checked against a plain bytearray model by hypothesis)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vhdkit.errors import ImageNotFoundError, ReadOnlyError, StorageError
from vhdkit.storage import FsspecStore, LocalStore, OverlayStore, is_url, open_store


def test_local_store_positional_io(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    with LocalStore(path, writable=True) as s:
        assert s.pread(2, 3) == b"234"
        assert s.pread(8, 100) == b"89"  # short only at the end
        assert s.pread(50, 10) == b""
        s.pwrite(12, b"xy")  # past the end: the gap reads as zeros
        assert s.size() == 14
        assert s.pread(9, 5) == b"9\0\0xy"
        s.truncate(4)
        s.flush()
        assert s.size() == 4
    assert path.read_bytes() == b"0123"


def test_local_store_read_only_refuses_writes(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    with LocalStore(path) as s:
        with pytest.raises(ReadOnlyError):
            s.pwrite(0, b"x")
        with pytest.raises(ReadOnlyError):
            s.truncate(0)
    assert path.read_bytes() == b"abc"


def test_missing_file_and_directory_are_vhdkit_errors(tmp_path):
    with pytest.raises(ImageNotFoundError) as err:
        open_store(tmp_path / "nope")
    assert isinstance(err.value, FileNotFoundError)
    with pytest.raises(StorageError, match="directory"):
        open_store(str(tmp_path))


def test_sparse_file_allocated_ranges_and_size_on_disk(tmp_path):
    path = tmp_path / "sparse"
    with open(path, "wb") as f:
        f.truncate(64 << 20)
        f.seek(16 << 20)
        f.write(b"x" * (1 << 20))
    with LocalStore(path, writable=True) as s:
        ranges = list(s.allocated_ranges())
        assert len(ranges) == 1 and ranges[0][0] <= 16 << 20 < ranges[0][0] + ranges[0][1]
        assert s.allocated_bytes() < 8 << 20
        assert s.preallocate(32 << 20, 4 << 20)
        assert s.allocated_bytes() >= 5 << 20
        s.punch(16 << 20, 1 << 20)
        assert s.pread(16 << 20, 16) == bytes(16)


def test_fsspec_memory_store_round_trip():
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/stores/a.bin", b"hello world")
    try:
        with open_store("memory://stores/a.bin") as s:
            assert isinstance(s, FsspecStore)
            assert s.size() == 11 and s.pread(6, 5) == b"world"
            with pytest.raises(ReadOnlyError):
                s.pwrite(0, b"x")
        with open_store("memory://stores/a.bin", writable=True) as s:
            s.pwrite(14, b"!")
            assert s.pread(10, 10) == b"d\0\0\0!"
        with pytest.raises(ImageNotFoundError):
            open_store("memory://stores/missing.bin")
    finally:
        fs.rm("/stores", recursive=True)


def test_file_url_is_a_local_store(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    with open_store(f"file://{path}") as s:
        assert isinstance(s, LocalStore) and s.pread(0, 3) == b"abc"


ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, 300), st.binary(min_size=1, max_size=64)),
        st.tuples(st.just("zero"), st.integers(0, 300), st.integers(1, 100)),
        st.tuples(st.just("truncate"), st.integers(0, 400), st.just(0)),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(base=st.binary(max_size=200), ops=ops, reads=st.lists(st.tuples(st.integers(0, 450), st.integers(0, 200)), max_size=10))
def test_overlay_behaves_like_a_bytearray_and_leaves_the_base_alone(tmp_path_factory, base, ops, reads):
    path = tmp_path_factory.mktemp("ov") / "base"
    path.write_bytes(base)
    model = bytearray(base)
    with LocalStore(path) as store:
        overlay = OverlayStore(store)
        for op, offset, arg in ops:
            if op == "write":
                overlay.pwrite(offset, arg)
                if offset > len(model):
                    model += bytes(offset - len(model))
                model[offset : offset + len(arg)] = arg
            elif op == "zero":
                overlay.write_zeros(offset, arg)
                end = offset + arg
                if end > len(model):
                    model += bytes(end - len(model))
                model[offset:end] = bytes(arg)
            else:
                overlay.truncate(offset)
                del model[offset:]
                model += bytes(offset - len(model))
            assert overlay.size() == len(model)
        for offset, n in reads + [(0, len(model) + 10)]:
            assert overlay.pread(offset, n) == bytes(model[offset : offset + n])
    assert path.read_bytes() == base


def test_writeback_hint_keeps_the_data(tmp_path):
    from vhdkit.storage import LocalStore

    path = tmp_path / "f"
    with LocalStore(path, writable=True, create=True) as s:
        s.pwrite(0, b"a" * (8 << 20))
        s.writeback_hint()  # starts writeback and drops clean pages: the bytes must stay
        assert s.pread(0, 8 << 20) == b"a" * (8 << 20)
        s.pwrite(4 << 20, b"b" * 4096)
        s.writeback_hint()
        assert s.pread(4 << 20, 4096) == b"b" * 4096


@pytest.mark.parametrize("target, expected", [
    ("memory://disk.vhdx", True), ("file:///var/disk.vhdx", True), ("smb://user@host/share/d.vhdx", True),
    ("s3+http://b/k", True), ("/var/lib/disk.vhdx", False), ("C:\\VMs\\disk.vhdx", False),
    ("c://x", False),  # one letter: a Windows drive written with slashes, not a scheme
    ("dir/sub://x", False), ("1http://x", False), ("x://", False), ("ab:/c", False),
])
def test_what_counts_as_a_url(target, expected):
    from urllib.parse import urlparse

    assert is_url(target) is expected
    if expected:  # agrees with the standard library where it says "URL"
        assert urlparse(target).scheme == target.split("://")[0]


@pytest.mark.parametrize("kernel", [True, False], ids=["copy_file_range", "read-write"])
def test_copy_range_within_a_store(tmp_path, kernel):
    path = tmp_path / "f"
    data = os.urandom(3 << 20)
    path.write_bytes(data + bytes(3 << 20))
    with LocalStore(path, writable=True) as store:
        if kernel:
            store.copy_range(1000, 4 << 20, (1 << 20) + 7)
        else:  # what a store without copy_file_range does
            super(LocalStore, store).copy_range(1000, 4 << 20, (1 << 20) + 7)
        assert store.pread(4 << 20, (1 << 20) + 8) == data[1000 : 1000 + (1 << 20) + 7] + b"\0"
        assert store.pread(0, len(data)) == data
        with pytest.raises(StorageError, match="short read"):
            store.copy_range(5 << 20, 2 << 20, 2 << 20)  # runs past the end of the file
    with LocalStore(path) as store, pytest.raises(ReadOnlyError):
        store.copy_range(0, 4 << 20, 10)


def test_stored_zeros_skips_holes_and_finds_late_data(tmp_path):
    from vhdkit.disk import StoredZeros

    path = tmp_path / "f"
    with open(path, "wb") as f:
        f.truncate(8 << 20)  # all hole
        f.seek(4 << 20)
        f.write(bytes(1 << 20))  # stored zeros
        f.seek((6 << 20) + 300_000)  # data past the first 256 KiB piece of its range
        f.write(b"\1")
    with LocalStore(path) as store:
        reads = []
        original = store.preadinto
        store.preadinto = lambda offset, buf: reads.append(offset) or original(offset, buf)  # type: ignore[method-assign]
        zeros = StoredZeros(store)
        hole_ranges = [start for start, _ in store.allocated_ranges()]
        assert zeros(0, 4 << 20)
        if hole_ranges and hole_ranges[0] >= 4 << 20:  # the filesystem reports holes: none was read
            assert reads == []
        assert zeros(4 << 20, 2 << 20)
        assert not zeros(6 << 20, 1 << 20)
        assert not zeros((6 << 20) + 300_000, 1)
        assert zeros((6 << 20) + 300_001, (2 << 20) - 300_001)
        assert zeros((8 << 20) - 10, 100)  # past the end reads zeros


def _resident_pages(path, length: int) -> list[bool]:
    """Which pages of the file's first ``length`` bytes are in the page cache (mincore(2))."""
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    pages = length // mmap.PAGESIZE
    vec = (ctypes.c_ubyte * pages)()
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), length) as m:
        anchor = ctypes.c_char.from_buffer(m)
        try:
            assert libc.mincore(ctypes.c_void_p(ctypes.addressof(anchor)), ctypes.c_size_t(length), vec) == 0
        finally:
            del anchor  # the mapping cannot close while ctypes holds its buffer
    return [bool(v & 1) for v in vec]


def _page_aligned_copy(data: bytes) -> memoryview:
    """``data`` in page-aligned memory from posix_memalign(3): aligned, but no mmap object."""
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    pointer = ctypes.c_void_p()
    assert libc.posix_memalign(ctypes.byref(pointer), mmap.PAGESIZE, len(data)) == 0
    buffer = (ctypes.c_char * len(data)).from_address(pointer.value)  # freed with the process: a test
    buffer[:] = data
    return memoryview(buffer).cast("B")


def test_write_direct_takes_aligned_pages_past_the_cache_and_the_rest_through_it(tmp_path):
    import mmap

    MiB = 1 << 20
    path = tmp_path / "target.img"
    path.write_bytes(b"")
    store = LocalStore(path, writable=True)
    if not store.write_direct(True):
        pytest.skip("this filesystem has no O_DIRECT")
    aligned = mmap.mmap(-1, MiB)
    aligned.write(os.urandom(MiB))
    unaligned = os.urandom(MiB)
    store.truncate(5 * MiB)
    store.pwrite(0, memoryview(aligned))  # page-aligned memory, offset, length: past the cache
    store.pwrite(MiB, unaligned)  # bytes: the page cache takes it
    store.pwrite(2 * MiB + 512, unaligned[:4096])  # an offset off the page: the page cache too
    # page-aligned memory that is not an mmap's (as a bytes object may be by chance): the cache too
    store.pwrite(4 * MiB, _page_aligned_copy(unaligned))
    store.write_direct(False)
    store.pwrite(3 * MiB, memoryview(aligned))  # turned off: through the cache again
    resident = _resident_pages(path, 5 * MiB)
    per_mib = [sum(resident[i * 256:(i + 1) * 256]) for i in range(5)]
    assert per_mib == [0, 256, per_mib[2], 256, 256] and per_mib[2] >= 1, per_mib
    got = bytearray(4 * MiB)
    assert store.preadinto(0, memoryview(got)) == 4 * MiB
    assert got[:MiB] == aligned[:] and got[MiB:2 * MiB] == unaligned
    assert got[2 * MiB + 512:2 * MiB + 512 + 4096] == unaligned[:4096] and got[3 * MiB:] == aligned[:]
    store.close()
