"""The ReceiveBufferSize/SendBufferSize change as a .reg file: bytes as regedit writes them, read
back by vhdkit, and merged into a real hive by hivex's tools."""

from __future__ import annotations

import subprocess

import pytest

from vhdkit.errors import RegistryError
from vhdkit.vmbus.registry import NET_CLASS, adapter_key, read_reg, reg_file

from ..conftest import require_tool, run
from .hive import empty_hive

KEY = f"HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\Class\\{NET_CLASS}\\0007"


def test_the_file_is_utf16le_with_a_bom_and_crlf():
    data = reg_file("0007", 2 << 20, 4 << 20)
    assert data[:2] == b"\xff\xfe"
    text = data[2:].decode("utf-16-le")
    assert text == ("Windows Registry Editor Version 5.00\r\n\r\n"
                    f"[{KEY}]\r\n"
                    '"ReceiveBufferSize"=dword:00000800\r\n'
                    '"SendBufferSize"=dword:00001000\r\n')
    assert read_reg(data) == {KEY: {"ReceiveBufferSize": 2 << 20, "SendBufferSize": 4 << 20}}


@pytest.mark.parametrize("call, message", [
    (lambda: reg_file("7", 1 << 20), "four digits"),
    (lambda: reg_file("0007", 1000), "whole number of KB"),
    (lambda: reg_file("0007", 0), "whole number of KB"),
    (lambda: reg_file("0007", None, None), "nothing to set"),
    (lambda: read_reg(b"REGEDIT4\r\n"), "not a .reg file"),
    (lambda: read_reg('Windows Registry Editor Version 5.00\r\n[K]\r\n"A"="text"\r\n'.encode()), "line 3"),
])
def test_bad_input_gets_a_clear_error(call, message):
    with pytest.raises(RegistryError, match=message):
        call()


def test_hivex_merges_the_file_into_a_hive_and_reads_the_values(tmp_path):
    require_tool("hivexregedit")
    hive = tmp_path / "SYSTEM"
    hive.write_bytes(empty_hive())
    # hivex creates a key only under an existing parent, and reads .reg text as UTF-8: the parents
    # come first, and the UTF-16 file vhdkit writes is converted (iconv) as it stands
    parents = KEY.split("\\")
    seed = "Windows Registry Editor Version 5.00\n\n" + "".join(
        f"[{chr(92).join(parents[:n])}]\n\n" for n in range(3, len(parents)))
    (tmp_path / "seed.reg").write_text(seed)
    prefix = "HKEY_LOCAL_MACHINE\\SYSTEM"
    run("hivexregedit", "--merge", "--prefix", prefix, hive, tmp_path / "seed.reg")
    (tmp_path / "netvsc.reg").write_bytes(reg_file("0007", 2 << 20, 3 << 20))
    utf8 = subprocess.run(["iconv", "-f", "UTF-16", "-t", "UTF-8", str(tmp_path / "netvsc.reg")], check=True,
                          capture_output=True).stdout
    (tmp_path / "netvsc.utf8.reg").write_bytes(utf8.replace(b"\r\n", b"\n"))
    run("hivexregedit", "--merge", "--prefix", prefix, hive, tmp_path / "netvsc.utf8.reg")
    node = KEY[len(prefix):]
    assert run("hivexget", hive, node, "ReceiveBufferSize").stdout.strip() == "2048"
    assert run("hivexget", hive, node, "SendBufferSize").stdout.strip() == "3072"
    exported = run("hivexregedit", "--export", "--prefix", prefix, hive, node).stdout
    assert read_reg(exported.encode()) == {KEY: {"ReceiveBufferSize": 2 << 20, "SendBufferSize": 3 << 20}}


def test_the_adapter_key_names_the_network_class():
    assert adapter_key("0012").endswith("{4d36e972-e325-11ce-bfc1-08002be10318}\\0012")
