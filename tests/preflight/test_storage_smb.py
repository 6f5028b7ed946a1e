"""Rule 15 against real file servers: the Linux collector logs in to each share it is given and
records the dialect; a server that speaks only SMB 2 fails (Hyper-V needs SMB 3), a stand-alone
Samba speaking SMB 3 is a warning (not continuously available), an unreachable share fails."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from ..copy.test_serve import vhdkit_argv


def collect(tmp_path: Path, name: str, share: str, password: str) -> str:
    out = tmp_path / f"{name}.json"
    env = dict(os.environ, VHDKIT_SMB_PASSWORD=password)
    done = subprocess.run([*vhdkit_argv(), "preflight", "collect", "--name", name, "--share", share, "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return str(out)


def preflight(*args: str) -> list[dict]:
    done = subprocess.run([*vhdkit_argv(), "preflight", *args, "--json", "--rule", "15"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode in (0, 2), done.stderr
    return json.loads(done.stdout)["results"]


def test_smb2_fails_smb3_standalone_warns_unreachable_fails(tmp_path, samba, smb2_server):
    old_share = f"smb://{smb2_server.user}@127.0.0.3:{samba.port}/vms"
    a = collect(tmp_path, "hosta", old_share, smb2_server.password)
    facts = json.loads(Path(a).read_text())
    assert facts["shares"][0]["reachable"] and facts["shares"][0]["dialect"].startswith("2.")
    assert "smb2-pw" not in Path(a).read_text()
    results = preflight(a, a, "--type", "live-storage", "--target", f"smb://127.0.0.3:{samba.port}/vms/web01.vhdx")
    assert results[0]["status"] == "fail" and "speaks SMB 2." in results[0]["reason"], results

    new_share = f"smb://{samba.user}@127.0.0.1:{samba.port}/share1"
    b = collect(tmp_path, "hostb", new_share, samba.password)
    results = preflight(a, b, "--type", "live-storage", "--target", f"smb://127.0.0.1:{samba.port}/share1/web01.vhdx")
    assert results[0]["status"] == "warn" and "SMB 3.1.1" in results[0]["reason"], results
    assert "not known to be continuously available" in results[0]["reason"]

    c = collect(tmp_path, "hostc", new_share, "wrong password")
    assert json.loads(Path(c).read_text())["shares"][0]["reachable"] is False
    results = preflight(a, c, "--type", "live-storage", "--target", f"smb://127.0.0.1:{samba.port}/share1/web01.vhdx")
    assert results[0]["status"] == "fail" and "does not reach" in results[0]["reason"], results
