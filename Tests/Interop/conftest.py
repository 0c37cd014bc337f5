"""Shared fixtures for the interop tests: they drive the built `execstream` binary with real peers."""
import os
import shutil
import subprocess

import pytest


@pytest.fixture(scope="session")
def execstream_bin() -> str:
    """The path of the built `execstream` binary (EXECSTREAM_BIN, set by `make interop-test`)."""
    path = os.environ.get("EXECSTREAM_BIN")
    if not path:
        bin_dir = subprocess.run(["swift", "build", "--show-bin-path"], check=True, capture_output=True, text=True).stdout.strip()
        path = os.path.join(bin_dir, "execstream")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"execstream binary not found at {path}: run `make build` first")
    return path


@pytest.fixture(scope="session")
def pkg_config() -> str:
    tool = shutil.which("pkg-config")
    if tool is None:
        pytest.fail("pkg-config is missing: `make deps` installs it")
    return tool
