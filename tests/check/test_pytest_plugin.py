"""The pytest plugin, driven by pytester: one item per image, findings as failure text."""

from __future__ import annotations

import shutil

import vhdkit
from vhdkit.units import MiB

pytest_plugins = ["pytester"]


def test_one_item_per_image_and_rules(pytester, tmp_path):
    images = pytester.path / "images"
    images.mkdir()
    vhdkit.create(images / "fixed.vhd", 8 * MiB, format="vhd", type="fixed").close()
    vhdkit.create(images / "dynamic.vhdx", 64 * MiB).close()
    broken = images / "broken.vhdx"
    shutil.copy(images / "dynamic.vhdx", broken)
    with open(broken, "r+b") as f:  # both headers damaged
        for at in (0x10000, 0x20000):
            f.seek(at + 64)
            f.write(b"\xff" * 8)
    result = pytester.runpytest("--vhdkit-images", "images/*", "-v")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*broken.vhdx*FAILED*", "*no valid header*"])
    result = pytester.runpytest("--vhdkit-images", "images/*.vhd*",
                                "--vhdkit-require", "type=fixed", "--vhdkit-require", "format=vhd")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*policy: type=fixed: the image is dynamic*"])


def test_a_pattern_matching_nothing_fails_and_a_bad_rule_is_a_usage_error(pytester):
    result = pytester.runpytest("--vhdkit-images", "nowhere/*.vhdx")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*matched no file*"])
    result = pytester.runpytest("--vhdkit-images", "x", "--vhdkit-require", "colour=red")
    assert result.ret == 4  # pytest's usage error
    result.stderr.fnmatch_lines(["*--vhdkit-require*unknown rule*"])


def test_the_plugin_is_installed_as_a_pytest11_entry_point():
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group="pytest11") if ep.name == "vhdkit"]
    assert len(found) == 1 and found[0].value == "vhdkit_cli.pytest_plugin"
