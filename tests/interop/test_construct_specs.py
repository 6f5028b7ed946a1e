"""The executable format specs in specs/ (construct declarations written from the specifications,
independently of vhdkit's own) parse every header, region table, metadata item, BAT entry and log
entry of images vhdkit writes and of the real samples, and every field agrees with what vhdkit
reads. A second parser of everything vhdkit writes, beside qemu-img, libvhdi and dissect."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import vhdkit
from vhdkit.storage import open_store
from vhdkit.vhd import layout as VL
from vhdkit.vhdx import layout as L
from vhdkit.vhdx.log import LogReader

ROOT = Path(__file__).resolve().parents[2]
MiB = 1 << 20


def _spec(name: str) -> ModuleType:
    pytest.importorskip("construct")
    module = sys.modules.get(f"specs_{name}")
    if module is None:
        spec = importlib.util.spec_from_file_location(f"specs_{name}", ROOT / "specs" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return module


def _read(path: Path, offset: int, n: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(n)


def _plain(value: Any) -> Any:
    """A construct FlagsEnum's flags as the integer they encode."""
    return sum(v for k, v in (("is_user", 1), ("is_virtual_disk", 2), ("is_required", 4),
                              ("leave_block_allocated", 1), ("has_parent", 2)) if value.get(k))


# -- VHDX ---------------------------------------------------------------------------------------
def check_vhdx(path: Path) -> dict[str, int]:
    """Parse every structure of a VHDX with the spec; compare with vhdkit; count what was compared."""
    X = _spec("vhdx_format")
    seen = {"headers": 0, "region tables": 0, "metadata items": 0, "bat entries": 0, "log entries": 0}
    with vhdkit.open(path, resolve_parents=False) as disk:
        dirty = not disk.header.log_is_empty
    if dirty:  # vhdkit reads through the log; the spec reads the file as it lies: replay it there first
        vhdkit.open(path, "r+", resolve_parents=False).close()
    with vhdkit.open(path, resolve_parents=False) as disk:
        ident = X.FileTypeIdentifier.parse(_read(path, 0, 520))
        assert ident.creator == disk.creator

        for slot, offset in zip((1, 2), X.HEADER_OFFSETS):
            raw = _read(path, offset, X.HEADER_SIZE)
            ours = disk.header_selection.headers[slot - 1]
            if ours is None:  # vhdkit found it damaged: so must the spec
                assert raw[:4] != b"head" or not X.crc32c_ok(raw, X.HEADER_SIZE)
                continue
            h = X.Header.parse(raw)
            assert X.crc32c_ok(raw, X.HEADER_SIZE)
            for field in ("checksum", "sequence_number", "file_write_guid", "data_write_guid", "log_guid",
                          "log_version", "version", "log_length", "log_offset", "reserved"):
                assert h[field] == getattr(ours, field), (slot, field)
            seen["headers"] += 1

        for copy, offset in zip((1, 2), X.REGION_TABLE_OFFSETS):
            raw = _read(path, offset, X.REGION_TABLE_SIZE)
            table = X.RegionTable.parse(raw)
            assert X.crc32c_ok(raw, X.REGION_TABLE_SIZE)
            ours = disk.regions.tables[copy - 1]
            assert ours is not None
            assert [(e.guid, e.file_offset, e.length, e.required) for e in table.entries] == \
                [(r.guid, r.file_offset, r.length, r.required) for r in ours.regions]
            seen["region tables"] += 1

        md = disk.metadata
        table = X.MetadataTable.parse(_read(path, md.region.file_offset, X.METADATA_TABLE_SIZE))
        assert [(e.item_id, e.offset, e.length, _plain(e.flags)) for e in table.entries] == \
            [(e.item_id, e.offset, e.length, e.flags) for e in md.entries]
        items = {}
        for e in table.entries:
            if e.item_id in X.METADATA_ITEMS and not e.flags.is_user:
                name, item = X.METADATA_ITEMS[e.item_id]
                items[name] = item.parse(_read(path, md.region.file_offset + e.offset, e.length))
                seen["metadata items"] += 1
        params = items["file_parameters"]
        assert (params.block_size, params.flags.leave_block_allocated, params.flags.has_parent) == \
            (md.block_size, md.leave_block_allocated, md.has_parent)
        assert items["virtual_disk_size"] == md.virtual_disk_size == disk.size
        assert items["virtual_disk_id"] == md.virtual_disk_id
        assert (items["logical_sector_size"], items["physical_sector_size"]) == \
            (md.logical_sector_size, md.physical_sector_size)
        if md.has_parent:
            pairs = {e.key: e.value for e in items["parent_locator"].entries}
            assert md.parent_locator is not None and pairs == md.parent_locator.entries

        bat_region = next(e for e in X.RegionTable.parse(_read(path, X.REGION_TABLE_OFFSETS[0], X.REGION_TABLE_SIZE)).entries
                          if e.guid == X.BAT_REGION)
        count = X.bat_entry_count(items["virtual_disk_size"], params.block_size, items["logical_sector_size"],
                                  bool(params.flags.has_parent))
        assert count == len(disk.bat)
        ratio = X.chunk_ratio(params.block_size, items["logical_sector_size"])
        raw = _read(path, bat_region.file_offset, count * X.BAT_ENTRY_SIZE)
        for index in range(count):
            is_bitmap = (index + 1) % (ratio + 1) == 0
            entry = (X.SectorBitmapBatEntry if is_bitmap else X.PayloadBatEntry).parse(raw[8 * index : 8 * index + 8])
            value = disk.bat[index]
            assert (int(entry.state), entry.file_offset_mb, entry.reserved) == \
                (L.BatEntry.state.of(value), L.BatEntry.file_offset_mb.of(value), L.BatEntry.reserved.of(value))
            state_type = L.SectorBitmapState if is_bitmap else L.PayloadBlockState
            if int(entry.state) in tuple(state_type):  # a named state: the same name in both
                assert str(entry.state) == state_type(int(entry.state)).name
            seen["bat entries"] += 1

        seen["log entries"] = _check_log(path, disk, X)
    return seen


def _check_log(path: Path, disk: Any, X: ModuleType) -> int:
    """Every entry lying in the log (at rest or not), by the spec and by vhdkit's reader."""
    header = disk.header
    log = _read(path, header.log_offset, header.log_length)
    compared = 0
    store = open_store(path)
    try:
        for position in range(0, len(log), X.LOG_SECTOR):
            if log[position : position + 4] != b"loge":
                continue
            head = X.LogEntryHeader.parse(log[position : position + 64])
            end = position + head.entry_length
            if head.entry_length % X.LOG_SECTOR or end > len(log) or not X.crc32c_ok(log[position:end], head.entry_length):
                continue  # a torn or overwritten entry: not one either parser should take
            entry = X.LogEntry.parse(log[position:end])
            ours = LogReader(store, header.replace(log_guid=head.log_guid)).entry_at(position)
            assert ours is not None, f"vhdkit refuses the log entry at {position:#x}"
            assert (ours.sequence_number, ours.tail, ours.entry_length, ours.flushed_file_offset,
                    ours.last_file_offset) == (head.sequence_number, head.tail, head.entry_length,
                                               head.flushed_file_offset, head.last_file_offset)
            theirs = [(d.body.file_offset, d.body.zero_length if d.signature == b"zero" else X.LOG_SECTOR,
                       d.signature == b"zero") for d in entry.descriptors]
            assert theirs == [(d.file_offset, d.length, d.is_zero) for d in ours.descriptors]
            for sector in entry.data_sectors:  # the split sequence number names the entry
                assert sector.sequence_high << 32 | sector.sequence_low == head.sequence_number
            compared += 1
    finally:
        store.close()
    return compared


def _vhdkit_made_vhdx(tmp_path: Path) -> list[Path]:
    made = []
    dynamic = tmp_path / "dynamic.vhdx"
    with vhdkit.create(dynamic, 2 << 30, block_size=1 * MiB) as disk:  # 2 GiB, 1 MiB blocks: BAT crosses a chunk
        for at in (0, 300 * MiB + 4096, 1 << 30, (2 << 30) - 4096):
            disk.pwrite(at, os.urandom(4096))
    made.append(dynamic)
    with vhdkit.create(tmp_path / "4k.vhdx", 1 << 30, logical_sector_size=4096) as disk:
        disk.pwrite(64 * MiB, b"\x11" * 8192)
    made.append(tmp_path / "4k.vhdx")
    vhdkit.create(tmp_path / "fixed.vhdx", 96 * MiB, type="fixed").close()
    made.append(tmp_path / "fixed.vhdx")
    with vhdkit.create(tmp_path / "child.avhdx", parent=dynamic) as disk:
        disk.pwrite(512, b"child data" * 100)  # a partial block: PARTIALLY_PRESENT and a sector bitmap
    made.append(tmp_path / "child.avhdx")
    vhdkit.resize(tmp_path / "4k.vhdx", 3 << 30)
    return made


def test_the_spec_reads_every_structure_of_vhdx_that_vhdkit_writes(tmp_path):
    totals: dict[str, int] = {}
    for path in _vhdkit_made_vhdx(tmp_path):
        for key, n in check_vhdx(path).items():
            totals[key] = totals.get(key, 0) + n
    assert totals["headers"] == 8 and totals["region tables"] == 8 and totals["metadata items"] >= 21
    assert totals["bat entries"] > 2000 and totals["log entries"] >= 4  # the writes went through the log


@pytest.mark.parametrize("name, log_entries", [("discutils/vhdx-log-replay.vhdx", 5), ("other/paulshir-config2_base.vhdx", 0)])
def test_the_spec_and_vhdkit_agree_on_the_windows_samples(sample, name, log_entries):
    seen = check_vhdx(sample(name))
    assert seen["headers"] == 2 and seen["region tables"] == 2 and seen["metadata items"] == 5
    assert seen["log entries"] >= log_entries


def test_the_spec_finds_a_damaged_header_as_vhdkit_does(tmp_path):
    path = tmp_path / "d.vhdx"
    vhdkit.create(path, 64 * MiB).close()
    with open(path, "r+b") as f:
        f.seek(L.HEADER_OFFSETS[0] + 40)
        f.write(b"\xff")  # inside header 1: its CRC no longer matches
    X = _spec("vhdx_format")
    assert not X.crc32c_ok(_read(path, L.HEADER_OFFSETS[0], X.HEADER_SIZE), X.HEADER_SIZE)
    assert check_vhdx(path)["headers"] == 1


# -- VHD ----------------------------------------------------------------------------------------
def check_vhd(path: Path) -> int:
    """Parse footer, its copy, the dynamic header and the BAT with the spec; compare; count fields."""
    V = _spec("vhd_format")
    compared = 0
    size = path.stat().st_size
    with vhdkit.open(path, resolve_parents=False) as disk:
        raw = _read(path, size - V.FOOTER_SIZE, V.FOOTER_SIZE)
        footer = V.Footer.parse(raw)
        ours = disk.footer
        assert V.checksum_ok(raw, V.FOOTER_CHECKSUM_AT, footer.checksum)
        assert (footer.current_size, footer.original_size, footer.data_offset, footer.unique_id, footer.features,
                footer.creator_application, footer.timestamp, footer.checksum) == \
            (ours.current_size, ours.original_size, ours.data_offset, ours.unique_id, ours.features,
             ours.creator_application, ours.timestamp, ours.checksum)
        geometry = footer.disk_geometry
        assert (geometry.cylinders, geometry.heads, geometry.sectors_per_track) == \
            (ours.cylinders, ours.heads, ours.sectors_per_track)
        assert str(footer.disk_type) == VL.DiskType(ours.disk_type).name == disk.disk_type.upper()
        compared += 1
        if str(footer.disk_type) == "FIXED":
            return compared
        assert _read(path, 0, V.FOOTER_SIZE) == raw  # the copy at 0
        raw_header = _read(path, footer.data_offset, V.DYNAMIC_HEADER_SIZE)
        header = V.DynamicHeader.parse(raw_header)
        assert V.checksum_ok(raw_header, V.DYNAMIC_HEADER_CHECKSUM_AT, header.checksum)
        assert (header.table_offset, header.max_table_entries, header.block_size, header.parent_unique_id) == \
            (disk.header.table_offset, disk.header.max_table_entries, disk.block_size, disk.header.parent_unique_id)
        if disk.differencing:
            assert header.parent_unicode_name == disk.parent_name
            locators = {}
            for entry in header.parent_locators:
                if entry.platform_code in (b"W2ru", b"W2ku"):
                    data = _read(path, entry.platform_data_offset, entry.platform_data_length)
                    locators[entry.platform_code.decode()] = data.decode("utf-16-le")
            assert locators == disk.parent_locators()
        bat = V.bat(header.max_table_entries).parse(_read(path, header.table_offset, 4 * header.max_table_entries))
        assert list(bat) == list(disk.bat)
        compared += 1 + len(bat)
    return compared


def test_the_spec_reads_every_structure_of_vhd_that_vhdkit_writes(tmp_path):
    base = tmp_path / "base.vhd"
    with vhdkit.create(base, 64 * MiB) as disk:
        disk.pwrite(5 * MiB, b"x" * 4096)
    with vhdkit.create(tmp_path / "child.vhd", parent=base) as disk:
        disk.pwrite(0, b"y" * 512)
    vhdkit.create(tmp_path / "fixed.vhd", 16 << 30, type="fixed").close()  # 16 GiB: CHS at its maximum
    counts = [check_vhd(tmp_path / name) for name in ("base.vhd", "child.vhd", "fixed.vhd")]
    assert counts[0] == counts[1] == 2 + 32 and counts[2] == 1


@pytest.mark.parametrize("name", ["dfvfs/ext2.vhd", "dfvfs/fat-differential.vhd"])
def test_the_spec_and_vhdkit_agree_on_the_vhd_samples(sample, name):
    assert check_vhd(sample(name)) >= 3


def test_the_specs_are_not_vhdkits_code():
    """An independent parser: the spec modules import construct (and crcmod), nothing of vhdkit."""
    for name in ("vhdx_format", "vhd_format"):
        text = (ROOT / "specs" / f"{name}.py").read_text()
        imports = [line for line in text.splitlines() if line.startswith(("import ", "from "))]
        assert imports and not [line for line in imports if "vhdkit" in line]
