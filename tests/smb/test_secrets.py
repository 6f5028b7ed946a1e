"""No password given in a URL reaches any output, report, log or file vhdkit writes: every command
that takes a location is run with a unique marker password in its smb:// URL, and everything it
printed and wrote (the JUnit report, the library's SQLite file, a converted image) is searched for
the marker, as text, UTF-16 and hex."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time

import pytest

MiB = 1 << 20
HOSTB_PASSWORD = "hostb-test-pw"  # the session's Samba gives hostb this one (tests/conftest.py)


def share_folder(samba, name: str) -> None:
    """A folder on share1 that the share's forced user may write in."""
    import pwd

    path = samba.share_path("share1") / name
    path.mkdir()
    owner = pwd.getpwnam(samba.user)
    os.chown(path, owner.pw_uid, owner.pw_gid)


def forms(marker: str) -> list[bytes]:
    raw = marker.encode()
    return [raw, marker.encode("utf-16-le"), marker.encode("utf-16-be"), raw.hex().encode(), raw.hex().upper().encode()]


@pytest.fixture
def marked(samba, tmp_path):
    """hostb's password is a unique marker for the length of the test (restored after)."""
    marker = "Mk" + secrets.token_hex(10)

    def set_password(password: str) -> None:
        subprocess.run(["smbpasswd", "-c", str(samba.conf), "-s", "-a", "hostb"], input=f"{password}\n{password}\n",
                       text=True, check=True, capture_output=True)

    set_password(marker)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VHDKIT_SMB_")}
    try:
        yield samba, marker, env
    finally:
        set_password(HOSTB_PASSWORD)


def test_no_password_from_a_url_in_any_output_or_file(marked, tmp_path):
    samba, marker, env = marked
    folder = f"secrets-{secrets.token_hex(4)}"
    base = f"smb://hostb:{marker}@{samba.host}:{samba.port}/share1/{folder}"
    image = f"{base}/disk.vhdx"
    outputs: list[bytes] = []

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run([sys.executable, "-m", "vhdkit", *args], capture_output=True, env=env, timeout=120)
        outputs.extend((done.stdout, done.stderr))
        assert not ok or done.returncode == 0, (args[0], done.stdout, done.stderr)
        return done

    share_folder(samba, folder)
    run("create", image, "--size", "16M", "--json")
    run("info", image)
    run("info", image, "--json")
    junit = tmp_path / "check.xml"
    run("check", image)
    run("check", image, "--json", "--junit", str(junit))
    run("check", image, "--require", "type=fixed", ok=False)  # a broken rule names the image too
    local = tmp_path / "copy.vhdx"
    run("convert", image, str(local))
    run("convert", image, str(tmp_path / "copy2.vhdx"), "--json")
    run("resize", image, "--size", "+1M")
    run("compact", image)
    db = tmp_path / "library.sqlite3"
    run("library", "scan", base, "--db", str(db), "--json")
    run("library", "list", "--db", str(db), "--json")
    listed = json.loads(outputs[-2])
    assert len(listed) == 1 and listed[0]["path"].endswith("/disk.vhdx")  # the image is there, by its clean URL
    run("library", "show", listed[0]["path"], "--db", str(db), "--json")
    run("library", "init", base, "--json")
    # a served disk: its messages and its control socket's answers
    control = tmp_path / "control.sock"
    nbd = tmp_path / "nbd.sock"
    served = subprocess.Popen([sys.executable, "-m", "vhdkit", "serve", image, "--nbd", f"unix:{nbd}", "--control",
                               str(control)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 30
        while not control.exists():
            assert served.poll() is None and time.monotonic() < deadline, served.communicate()
            time.sleep(0.05)
        run("migrate", "--control", str(control), "--status", "--json")
        run("migrate", "--control", str(control), "--to", str(tmp_path / "moved.vhdx"), "--complete", "--json")
    finally:
        served.send_signal(signal.SIGTERM)
        out, err = served.communicate(timeout=30)
        outputs.extend((out, err))
    # the pytest plugin: an item per image, named by its location
    plugin = subprocess.run([sys.executable, "-m", "pytest", "--vhdkit-images", image,
                             "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)],
                            capture_output=True, env=env, cwd=tmp_path, timeout=120)
    outputs.extend((plugin.stdout, plugin.stderr))
    assert b"1 passed" in plugin.stdout, plugin.stdout

    written = [junit.read_bytes(), db.read_bytes(), local.read_bytes()]
    written += [p.read_bytes() for p in tmp_path.glob("library.sqlite3*")]
    leaks = [i for i, blob in enumerate(outputs + written) if any(f in blob for f in forms(marker))]
    assert leaks == [], [(outputs + written)[i][:400] for i in leaks]
    assert os.stat(db).st_mode & 0o777 == 0o600
    warned = b"".join(outputs).count(b"visible in the process list")
    assert warned >= 1  # each process that got a password in a URL said, once, to stop doing that
    for blob in outputs:
        assert blob.count(b"visible in the process list") <= 1


def test_the_password_is_used_but_never_kept(marked, tmp_path):
    """The marker opens the share (so the tests above really logged in with it), and a location
    read back from the library works again in the same process without it being stored."""
    samba, marker, env = marked
    code = ("import sys, vhdkit\n"
            "from vhdkit.library import Library\n"
            "url = sys.argv[1]\n"
            "vhdkit.create(url + '/d.vhdx', 16 << 20).close()\n"
            "with Library(sys.argv[2]) as lib:\n"
            "    lib.scan([url])\n"
            "    [record] = lib.records()\n"
            "    print(record.path)\n"
            "    with vhdkit.open(record.path) as disk:\n"
            "        print(disk.size)\n")
    folder = f"kept-{secrets.token_hex(4)}"
    share_folder(samba, folder)
    url = f"smb://hostb:{marker}@{samba.host}:{samba.port}/share1/{folder}"
    done = subprocess.run([sys.executable, "-c", code, url, str(tmp_path / "l.sqlite3")], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    path, size = done.stdout.split()
    assert marker not in done.stdout + done.stderr and path == f"smb://hostb@{samba.host}:{samba.port}/share1/{folder}/d.vhdx"
    assert int(size) == 16 * MiB
    wrong = url.replace(marker, "not-the-password")
    refused = subprocess.run([sys.executable, "-m", "vhdkit", "info", f"{wrong}/d.vhdx"], capture_output=True,
                             text=True, env=env, timeout=60)
    assert refused.returncode != 0 and "not-the-password" not in refused.stdout + refused.stderr
