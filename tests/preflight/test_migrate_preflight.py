"""`vhdkit migrate` runs the preflight rule for its target before copying: a share that speaks
only SMB 2 stops it with the report, nothing is created there and the guest stays on the source;
``--no-preflight`` skips the check."""

from __future__ import annotations

import vhdkit

from ..copy.test_serve import Served
from ..test_cli import vhdkit_cmd

MiB = 1 << 20


def test_migrate_to_an_smb2_share_is_stopped_by_the_preflight(tmp_path, samba, smb2_server, monkeypatch):
    monkeypatch.setenv("VHDKIT_SMB_PASSWORD", smb2_server.password)
    image = tmp_path / "vm1.vhdx"
    vhdkit.create(image, size=16 * MiB).close()
    target = f"smb://{smb2_server.user}@127.0.0.3:{samba.port}/vms/vm1.vhdx"
    served = Served(image, tmp_path)
    try:
        refused = vhdkit_cmd("migrate", "--control", str(served.control), "--to", target, "--complete")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "preflight FAIL 15 storage" in refused.stderr and "speaks SMB 2." in refused.stderr
        assert "nothing was copied" in refused.stderr
        assert list(smb2_server.share_path("vms").iterdir()) == []
        status = vhdkit_cmd("migrate", "--control", str(served.control), "--status")
        assert status.stdout.strip().endswith(": no migration"), status.stdout  # no job was started
        moved = vhdkit_cmd("migrate", "--control", str(served.control), "--to", target, "--complete",
                           "--no-preflight")
        assert moved.returncode == 0, moved.stderr
        assert (smb2_server.share_path("vms") / "vm1.vhdx").exists()
    finally:
        served.stop()
