"""The `execstream` command line, as a user runs it."""
import subprocess


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60)


def test_version_names_the_runtime_and_the_linked_nghttp2(execstream_bin, pkg_config):
    result = run(execstream_bin, "version")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("execstream ")
    assert lines[0].split(" ", 1)[1].count(".") == 2, "a semantic version"
    assert "CRI API: v1" in lines
    system_nghttp2 = run(pkg_config, "--modversion", "libnghttp2").stdout.strip()
    assert f"nghttp2: {system_nghttp2}" in lines


def test_an_unknown_command_is_one_clear_error_and_a_non_zero_exit(execstream_bin):
    result = run(execstream_bin, "no-such-command")
    assert result.returncode != 0
    assert "no-such-command" in result.stderr
    assert result.stdout == ""


def test_help_lists_the_commands(execstream_bin):
    result = run(execstream_bin, "--help")
    assert result.returncode == 0
    assert "version" in result.stdout
