"""A pytest plugin: validate disk images as tests, one test item per image.

    pytest --vhdkit-images 'images/*.vhdx' --vhdkit-require type=fixed --vhdkit-require size-multiple=1MiB

Each image passes when ``vhdkit check`` finds it clean (warnings allowed); errors, leaks, broken
rules and images that cannot be checked fail, with the findings as the failure text. A pattern
that matches nothing fails too, so a CI job cannot pass by checking no image. Loaded through the
``pytest11`` entry point; it does nothing unless --vhdkit-images is given.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("vhdkit", "disk image validation (vhdkit check)")
    group.addoption("--vhdkit-images", action="append", default=[], metavar="GLOB",
                    help="check the disk images matching GLOB (repeatable; ** matches folders)")
    group.addoption("--vhdkit-require", action="append", default=[], metavar="RULE",
                    help="a rule every image must meet, as `vhdkit check --require` (repeatable)")


def pytest_configure(config: Any) -> None:
    if config.getoption("vhdkit_images"):
        from vhdkit.ops.check import parse_rules

        try:
            parse_rules(config.getoption("vhdkit_require"))
        except ValueError as e:
            raise pytest.UsageError(f"--vhdkit-require: {e}") from None


def pytest_collection_modifyitems(session: Any, config: Any, items: list[Any]) -> None:
    patterns = config.getoption("vhdkit_images")
    if not patterns:
        return
    from vhdkit.storage import is_url, redact

    collector = ImageCollector.from_parent(session, name="vhdkit-images")
    for pattern in patterns:
        # a URL is one image (no globbing over a share); its item is named without its password
        matches = [pattern] if is_url(pattern) else sorted(glob.glob(pattern, recursive=True))
        if not matches:
            items.append(NoImageItem.from_parent(collector, name=redact(pattern)))
        for path in matches:
            item = ImageItem.from_parent(collector, name=redact(path))
            item.image = path
            items.append(item)


class ImageCollector(pytest.Collector):
    def collect(self) -> list[Any]:  # the items are made by the hook above
        return []


class ImageCheckFailed(Exception):
    pass


class ImageItem(pytest.Item):
    image = ""  # the image's path or URL (the name shows it without a password)

    def runtest(self) -> None:
        from vhdkit.ops.check import check

        report = check(self.image or self.name, policy=self.config.getoption("vhdkit_require"))
        self.user_properties.append(("vhdkit_verdict", report.verdict))
        if report.exit_code != 0:
            from vhdkit_cli.check import render

            raise ImageCheckFailed(render(report))

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:
        if isinstance(excinfo.value, ImageCheckFailed):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo, style))

    def reportinfo(self) -> tuple[Path, None, str]:
        return Path(self.name), None, f"vhdkit check {self.name}"


class NoImageItem(pytest.Item):
    def runtest(self) -> None:
        raise ImageCheckFailed(f"--vhdkit-images {self.name!r} matched no file")

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:
        return str(excinfo.value)

    def reportinfo(self) -> tuple[str, None, str]:
        return self.name, None, f"vhdkit images {self.name}"
