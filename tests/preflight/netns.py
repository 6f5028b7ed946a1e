"""Two (or more) "hosts" for the Linux collector: network namespaces the tests create and remove,
joined by veth pairs, each collected by `vhdkit preflight collect` run inside it."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

from ..conftest import require_tool, unavailable
from ..copy.test_serve import vhdkit_argv


def sh(*argv: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"
    return done


class Lab:
    """Namespaces named after this process, so parallel runs never meet; ``close`` removes them."""

    def __init__(self, folder: Path, *hosts: str) -> None:
        require_tool("ip")
        require_tool("ethtool")
        require_tool("ping")
        if os.geteuid() != 0:
            unavailable("network namespaces need root")
        self.folder = folder
        self.ns = {h: f"vk{os.getpid()}{h}" for h in hosts}
        made = []
        try:
            for name in self.ns.values():
                sh("ip", "netns", "add", name)
                made.append(name)
                sh("ip", "-n", name, "link", "set", "lo", "up")
        except AssertionError:
            for name in made:
                subprocess.run(["ip", "netns", "del", name], capture_output=True)
            raise

    def close(self) -> None:
        for name in self.ns.values():
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=60)

    def run(self, host: str, command: str) -> subprocess.CompletedProcess[str]:
        """A shell command inside ``host``'s namespace (a fix the report printed, say)."""
        return sh("ip", "netns", "exec", self.ns[host], "sh", "-c", command)

    def link(self, a: str, a_if: str, a_addr: str, b: str, b_if: str, b_addr: str) -> None:
        sh("ip", "link", "add", a_if, "netns", self.ns[a], "type", "veth", "peer", "name", b_if, "netns", self.ns[b])
        for host, ifname, addr in ((a, a_if, a_addr), (b, b_if, b_addr)):
            if addr:
                self.run(host, f"ip addr add {addr} dev {ifname}")
            self.run(host, f"ip link set dev {ifname} up")

    def collect(self, host: str, *args: str) -> Path:
        out = self.folder / f"{host}.json"
        cmd = " ".join(shlex.quote(a) for a in [*vhdkit_argv(), "preflight", "collect", "--name", host,
                                                  "--out", str(out), *args])
        self.run(host, cmd)
        return out

    def preflight(self, *args: str, hosts: tuple[str, ...] = ("hosta", "hostb"),
                  collect: dict[str, tuple[str, ...]] | None = None) -> tuple[int, list[dict[str, Any]]]:
        files = [str(self.collect(h, *(collect or {}).get(h, ()))) for h in hosts]
        done = subprocess.run([*vhdkit_argv(), "preflight", *files, "--json", *args], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode in (0, 1, 2), done.stderr
        return done.returncode, json.loads(done.stdout)["results"]

    def apply(self, result: dict[str, Any]) -> None:
        """Run the fix a result printed, in the namespace of the host it names."""
        host, _, command = result["fix"].partition(": ")
        assert host.startswith("on ") and host[3:] in self.ns, result
        self.run(host[3:], command)


def of_rule(results: list[dict[str, Any]], rule: int) -> list[dict[str, Any]]:
    return [r for r in results if r["rule"] == rule]

