"""`vhdkit vmbus plan / simulate / bench`."""

from __future__ import annotations

import json
import struct
import zlib

from vhdkit.vmbus.registry import read_reg

from ..test_cli import vhdkit_cmd


def test_plan_gives_the_buffer_and_writes_the_reg_file(tmp_path):
    reg = tmp_path / "netvsc.reg"
    r = vhdkit_cmd("vmbus", "plan", "--rate", "200000pps", "--instance", "0007", "--reg", str(reg), "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["needed"]["buffers"] == 2_000 and plan["needed"]["max_packets_per_second"] >= 200_000
    assert [(p["buffers"], p["max_packets_per_second"]) for p in plan["standard"]] == [
        (655, 65_500), (1_310, 131_000), (2_621, 262_100)]
    values = next(iter(read_reg(reg.read_bytes()).values()))
    assert values == {"ReceiveBufferSize": plan["needed"]["buffer_bytes"], "SendBufferSize": plan["needed"]["buffer_bytes"]}
    human = vhdkit_cmd("vmbus", "plan", "--rate", "65.5kpps", "--quantum", "10ms").stdout
    assert "1 MB: 655 buffers, up to 65,500 packets/s - enough" in human


def test_simulate_prints_loss_and_draws_a_png(tmp_path):
    png = tmp_path / "loss.png"
    r = vhdkit_cmd("vmbus", "simulate", "--rate", "65500,65501,140k", "--buffer", "1M,2M", "--seconds", "1",
                   "--plot", str(png), "--json")
    assert r.returncode == 0, r.stderr
    loss = json.loads(r.stdout)["loss"]
    assert loss["1MB"][0] == 0 and loss["1MB"][1] > 0 and loss["2MB"][1] == 0 and loss["2MB"][2] > 0
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    idat = data.index(b"IDAT")
    length = struct.unpack(">I", data[idat - 4 : idat])[0]
    pixels = zlib.decompress(data[idat + 4 : idat + 4 + length])
    assert len(pixels) == height * (1 + 3 * width)
    assert bytes((31, 119, 180)) in pixels and bytes((214, 39, 40)) in pixels  # a line per buffer size


def test_bad_rates_and_durations_are_clear_errors():
    r = vhdkit_cmd("vmbus", "plan", "--rate", "fast")
    assert r.returncode == 1 and "not a packet rate" in r.stderr
    r = vhdkit_cmd("vmbus", "plan", "--rate", "1000", "--quantum", "10 parsecs")
    assert r.returncode == 1 and "not a duration" in r.stderr
    r = vhdkit_cmd("vmbus", "plan", "--rate", "1000", "--instance", "7")
    assert r.returncode == 1 and "four digits" in r.stderr


def test_bench_runs_and_checks_every_packet():
    """A count of packets, not a time: a loaded machine makes it slower, never wrong."""
    r = vhdkit_cmd("vmbus", "bench", "--packets", "20000", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["payload_bytes"] for row in rows] == [64, 256, 1500]
    assert all(row["packets"] == 20000 and row["packets_per_second"] > 0 for row in rows)


def test_a_reg_file_must_name_its_adapter(tmp_path):
    """Without --instance the .reg would target adapter 0000, whichever NIC that is: refused."""
    reg = tmp_path / "nic.reg"
    r = vhdkit_cmd("vmbus", "plan", "--rate", "200kpps", "--reg", str(reg))
    assert r.returncode == 1 and "--instance NNNN" in r.stderr and not reg.exists()
    plain = vhdkit_cmd("vmbus", "plan", "--rate", "200kpps")  # no file asked for: no instance needed
    assert plain.returncode == 0 and "--reg FILE writes the .reg file" in plain.stdout
