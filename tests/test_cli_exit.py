"""How the ``vhdkit`` command ends its process (cli/main.py: run): without the interpreter's
teardown when nothing would run at exit, and otherwise exactly as before: every byte of output
is there, the exit status is main()'s, atexit callbacks run, other threads finish."""

from __future__ import annotations

import subprocess
import sys

import pytest

import vhdkit
from vhdkit_cli.main import main

# A command line run through run(), with something of the test's own set up first. The object
# bound to ``noisy`` says so when the interpreter's teardown destroys it.
SCRIPT = """
import os, sys
from vhdkit_cli.main import run
class Noisy:
    def __del__(self):
        os.write(2, b"[teardown]")
noisy = Noisy()
{setup}
sys.argv = ["vhdkit", *{argv!r}]
run()
"""


def vhdkit_run(*argv: str, setup: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT.format(setup=setup, argv=list(argv))],
                          capture_output=True, text=True, timeout=60)


def test_a_finished_command_skips_the_teardown_and_keeps_its_output_and_status(tmp_path):
    image = tmp_path / "a.vhdx"
    vhdkit.create(image, 1 << 30, format="vhdx").close()
    done = vhdkit_run("info", "--json", str(image))
    assert done.returncode == 0 and '"virtual_size": 1073741824' in done.stdout
    assert done.stdout.rstrip().endswith("}")  # all of it, flushed through the pipe
    assert "[teardown]" not in done.stderr
    failed = vhdkit_run("info", str(tmp_path / "missing.vhdx"))
    assert failed.returncode == 1 and "vhdkit: error:" in failed.stderr and "[teardown]" not in failed.stderr


def test_help_and_mistakes_keep_argparse_statuses(capsys):
    with pytest.raises(SystemExit):
        main(["info", "--help"])
    helped = vhdkit_run("info", "--help")
    assert helped.returncode == 0 and helped.stdout == capsys.readouterr().out  # every line of it
    wrong = vhdkit_run("info")
    assert wrong.returncode == 2 and "the following arguments are required: image" in wrong.stderr
    assert "[teardown]" not in helped.stderr + wrong.stderr


def test_an_atexit_callback_runs_and_the_ordinary_exit_with_it(tmp_path):
    image = tmp_path / "a.vhd"
    vhdkit.create(image, 1 << 20, format="vhd").close()
    done = vhdkit_run("info", str(image), setup="import atexit; atexit.register(os.write, 2, b'[atexit]')")
    assert done.returncode == 0 and "format" in done.stdout
    assert "[atexit]" in done.stderr and "[teardown]" in done.stderr


def test_another_thread_is_waited_for(tmp_path):
    image = tmp_path / "a.vhd"
    vhdkit.create(image, 1 << 20, format="vhd").close()
    late = tmp_path / "late"
    setup = ("import threading, time\n"
             f"threading.Thread(target=lambda: (time.sleep(0.3), open({str(late)!r}, 'w').write('done'))).start()")
    done = vhdkit_run("info", str(image), setup=setup)
    assert done.returncode == 0 and late.read_text() == "done"
