"""validate_repo_path: every rejection rule, symlink handling and allowed roots."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.jobs.paths import RepoPathError, validate_repo_path


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


# --- accepted paths -------------------------------------------------------------------------------


def test_existing_absolute_directory_is_returned_resolved(tmp_path: Path) -> None:
    assert validate_repo_path(str(tmp_path)) == tmp_path.resolve()


@pytest.mark.parametrize("suffix", ["/", "/./", "//", "/./././"])
def test_dot_segments_and_repeated_slashes_are_normalised(tmp_path: Path, suffix: str) -> None:
    repo = _mkdir(tmp_path / "repo")
    assert validate_repo_path(f"{tmp_path}{suffix}repo") == repo.resolve()


@pytest.mark.parametrize("name", ["a..b", "...", "..hidden", "trailing..", "100%25 done", "50% off", "é-ü"])
def test_names_that_only_look_suspicious_are_accepted(tmp_path: Path, name: str) -> None:
    repo = _mkdir(tmp_path / name)
    assert validate_repo_path(str(repo)) == repo.resolve()


# --- empty and control characters -----------------------------------------------------------------


@pytest.mark.parametrize("raw", ["", " ", "   \t  "])
def test_empty_or_whitespace_is_rejected(raw: str) -> None:
    with pytest.raises(RepoPathError, match="repo_path must not be empty"):
        validate_repo_path(raw)


@pytest.mark.parametrize("raw", ["/tmp/x\x00y", "\x00", "/tmp/\x00/../etc"])
def test_nul_byte_is_rejected(raw: str) -> None:
    with pytest.raises(RepoPathError, match="contains a NUL byte"):
        validate_repo_path(raw)


@pytest.mark.parametrize("raw", ["/tmp/x\ny", "/tmp/\x1b[31mred", "/tmp/del\x7f", "/tmp/nel\x85", "/tmp/\rx"])
def test_control_characters_are_rejected(raw: str) -> None:
    with pytest.raises(RepoPathError, match="contains control characters"):
        validate_repo_path(raw)


# --- traversal ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "/var/data/../../etc/passwd",
        "/tmp/../../../etc/passwd",
        "/home/user/../../../etc/shadow",
        "./../../sensitive",
        "relative/../../../etc/hosts",
        "/a/b/..",
        "/..",
        "..",
        "../etc",
        "~/../root",
        "/srv/repo/../repo",
    ],
)
def test_dot_dot_segments_are_rejected(raw: str) -> None:
    with pytest.raises(RepoPathError, match="Path traversal detected"):
        validate_repo_path(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "/srv/%2e%2e/etc",
        "/srv/%2e%2e%2fetc",
        "%2e%2e%2f%2e%2e%2fetc/passwd",
        "/srv/%2E%2E/etc",
        "/srv/%2E%2E%2Fetc",
        "/srv/..%2fetc",
        "/srv/%2e./etc",
        "/srv/.%2e/etc",
        "/srv/..%5cetc",
        "/srv/%2e%2e%5cetc",
        "/srv/%252e%252e%252fetc",
        "/srv/%252E%252E/etc",
        "/srv/%25252e%25252e/etc",
        "/srv/%c0%ae%c0%ae/etc",
        "/srv/%c0%ae%c0%ae%c0%afetc",
        "/srv/%C0%AE%C0%AE/etc",
        "/srv/%e0%80%ae%e0%80%ae/etc",
        "/srv/%f0%80%80%ae%f0%80%80%ae/etc",
        "/srv/%25c0%25ae%25c0%25ae/etc",
        "/srv/%u002e%u002e/etc",
        "/srv/\uff0e\uff0e/etc",
        "/srv/%ef%bc%8e%ef%bc%8e/etc",
    ],
)
def test_percent_encoded_traversal_is_rejected(raw: str) -> None:
    with pytest.raises(RepoPathError, match="Path traversal detected"):
        validate_repo_path(raw)


def test_encoded_traversal_message_says_it_was_decoded() -> None:
    with pytest.raises(RepoPathError, match=r"\(after percent-decoding\)"):
        validate_repo_path("/srv/%252e%252e%252fetc")


def test_six_levels_of_percent_encoding_are_decoded_seven_are_rejected(tmp_path: Path) -> None:
    six_levels = _mkdir(tmp_path / ("%" + "25" * 5 + "41"))
    assert validate_repo_path(str(six_levels)) == six_levels.resolve()
    with pytest.raises(RepoPathError, match="percent-encoded more than 6 levels deep"):
        validate_repo_path(f"{tmp_path}/%{'25' * 6}41")


# --- Windows forms --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "C:\\Users\\alice\\repo",
        "C:/Users/alice/repo",
        "c:",
        "D:relative",
        "\\\\server\\share\\repo",
        "//server/share/repo",
        "/srv/repo\\sub",
        "\\srv\\repo",
    ],
)
def test_windows_style_paths_are_rejected(raw: str) -> None:
    with pytest.raises(RepoPathError, match="Windows-style paths are not supported"):
        validate_repo_path(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "C:\\..\\Windows",
        "C:\\repo\\..\\..\\secret",
        "\\\\server\\share\\..\\x",
        "/srv/repo\\..\\etc",
        "..\\x",
    ],
)
def test_windows_style_traversal_reports_traversal(raw: str) -> None:
    with pytest.raises(RepoPathError, match="Path traversal detected"):
        validate_repo_path(raw)


def test_triple_leading_slash_is_a_plain_posix_path(tmp_path: Path) -> None:
    assert validate_repo_path(f"//{tmp_path}") == tmp_path.resolve()


# --- absoluteness ---------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["relative/x", "./x", "x", "./relative/path", " /tmp"])
def test_relative_paths_are_rejected(raw: str) -> None:
    with pytest.raises(RepoPathError, match="must be absolute"):
        validate_repo_path(raw)


@pytest.mark.parametrize("raw", ["~", "~/projects/app", "~alice/app"])
def test_tilde_is_not_expanded(raw: str) -> None:
    with pytest.raises(RepoPathError, match=r"must be absolute.*'~' is not expanded"):
        validate_repo_path(raw)


# --- existence and type ---------------------------------------------------------------------------


@pytest.mark.parametrize("relative", ["missing", "missing/deeper"])
def test_missing_path_is_rejected(tmp_path: Path, relative: str) -> None:
    with pytest.raises(RepoPathError, match="does not exist"):
        validate_repo_path(str(tmp_path / relative))


def test_file_is_rejected(tmp_path: Path) -> None:
    file = tmp_path / "file.txt"
    file.write_text("x")
    with pytest.raises(RepoPathError, match="is not a directory"):
        validate_repo_path(str(file))


def test_path_below_a_file_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(RepoPathError, match="is not a directory"):
        validate_repo_path(str(tmp_path / "file.txt" / "sub"))


def test_symlink_to_file_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "file.txt")
    with pytest.raises(RepoPathError, match="is not a directory"):
        validate_repo_path(str(tmp_path / "link"))


def test_dangling_symlink_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    with pytest.raises(RepoPathError, match=r"does not exist.*missing target"):
        validate_repo_path(str(tmp_path / "link"))


def test_symlink_loop_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(RepoPathError, match="cannot be resolved"):
        validate_repo_path(str(tmp_path / "a"))


@pytest.fixture
def world_searchable_dir() -> Iterator[Path]:
    """A directory every user can traverse (pytest's tmp_path parents are private to their owner)."""
    base = Path(tempfile.mkdtemp(prefix="repo-paths-"))
    base.chmod(0o755)
    yield base
    for path in base.rglob("*"):
        path.chmod(0o755)
    shutil.rmtree(base)


def _rejection_as_unprivileged_user(raw: str) -> str:
    """Run the validator without root's permission bypass; return the rejection message."""
    if os.geteuid() != 0:
        with pytest.raises(RepoPathError) as caught:
            validate_repo_path(raw)
        return str(caught.value)
    nobody = pwd.getpwnam("nobody")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop to 'nobody', report the outcome through the pipe
        try:
            os.close(read_end)
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            try:
                validate_repo_path(raw)
                message = "accepted"
            except RepoPathError as error:
                message = str(error)
            os.write(write_end, message.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        message = reader.read().decode()
    os.waitpid(pid, 0)
    return message


def test_unreadable_directory_is_rejected(world_searchable_dir: Path) -> None:
    locked = world_searchable_dir / "locked"
    locked.mkdir(mode=0o000)
    locked.chmod(0o000)
    assert "is not readable by the server process" in _rejection_as_unprivileged_user(str(locked))


def test_unsearchable_parent_is_rejected(world_searchable_dir: Path) -> None:
    parent = _mkdir(world_searchable_dir / "parent")
    _mkdir(parent / "repo")
    parent.chmod(0o000)
    assert "is not readable by the server process" in _rejection_as_unprivileged_user(str(parent / "repo"))


# --- symlinks without allowed roots ---------------------------------------------------------------


def test_symlink_inside_its_parent_is_followed(tmp_path: Path) -> None:
    real = _mkdir(tmp_path / "releases" / "v2")
    (tmp_path / "current").symlink_to(real)
    assert validate_repo_path(str(tmp_path / "current")) == real.resolve()


def test_relative_symlink_inside_its_parent_is_followed(tmp_path: Path) -> None:
    real = _mkdir(tmp_path / "real")
    (tmp_path / "link").symlink_to("real")
    assert validate_repo_path(str(tmp_path / "link")) == real.resolve()


@pytest.mark.parametrize("below", ["", "/sub"])
def test_symlink_escaping_its_parent_is_rejected(tmp_path: Path, below: str) -> None:
    _mkdir(tmp_path / "elsewhere" / "sub")
    _mkdir(tmp_path / "repos")
    (tmp_path / "repos" / "app").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(RepoPathError, match=r"symlink .*app -> .*elsewhere escapes its parent directory"):
        validate_repo_path(f"{tmp_path}/repos/app{below}")


def test_relative_symlink_climbing_out_is_rejected(tmp_path: Path) -> None:
    _mkdir(tmp_path / "outside")
    _mkdir(tmp_path / "repos")
    (tmp_path / "repos" / "app").symlink_to("../outside")
    with pytest.raises(RepoPathError, match="escapes its parent directory"):
        validate_repo_path(str(tmp_path / "repos" / "app"))


# --- allowed roots --------------------------------------------------------------------------------


def test_path_inside_an_allowed_root_is_accepted(tmp_path: Path) -> None:
    repo = _mkdir(tmp_path / "root" / "team" / "app")
    assert validate_repo_path(str(repo), allowed_roots=[tmp_path / "root"]) == repo.resolve()


def test_root_itself_is_accepted_and_roots_may_be_strings(tmp_path: Path) -> None:
    root = _mkdir(tmp_path / "root")
    assert validate_repo_path(str(root), allowed_roots=[str(root)]) == root.resolve()


def test_path_outside_every_allowed_root_is_rejected_listing_them(tmp_path: Path) -> None:
    first, second = _mkdir(tmp_path / "first"), _mkdir(tmp_path / "second")
    repo = _mkdir(tmp_path / "other" / "app")
    with pytest.raises(RepoPathError, match="outside the allowed roots") as caught:
        validate_repo_path(str(repo), allowed_roots=[first, second])
    assert str(first.resolve()) in str(caught.value)
    assert str(second.resolve()) in str(caught.value)


def test_sibling_sharing_a_name_prefix_is_not_inside_the_root(tmp_path: Path) -> None:
    root = _mkdir(tmp_path / "repo")
    evil = _mkdir(tmp_path / "repo-evil")
    with pytest.raises(RepoPathError, match="outside the allowed roots"):
        validate_repo_path(str(evil), allowed_roots=[root])


def test_symlink_to_another_allowed_root_is_accepted(tmp_path: Path) -> None:
    first = _mkdir(tmp_path / "first")
    real = _mkdir(tmp_path / "second" / "app")
    (first / "app").symlink_to(real)
    resolved = validate_repo_path(str(first / "app"), allowed_roots=[first, tmp_path / "second"])
    assert resolved == real.resolve()


def test_symlink_leaving_the_allowed_roots_is_rejected(tmp_path: Path) -> None:
    root = _mkdir(tmp_path / "root")
    _mkdir(tmp_path / "secret")
    (root / "app").symlink_to(tmp_path / "secret")
    with pytest.raises(RepoPathError, match=r"symlink .*app leads to .*secret, which escapes the allowed roots"):
        validate_repo_path(str(root / "app"), allowed_roots=[root])


def test_root_that_is_itself_a_symlink_is_resolved(tmp_path: Path) -> None:
    real_root = _mkdir(tmp_path / "real-root")
    repo = _mkdir(real_root / "app")
    (tmp_path / "root-link").symlink_to(real_root)
    resolved = validate_repo_path(str(tmp_path / "root-link" / "app"), allowed_roots=[tmp_path / "root-link"])
    assert resolved == repo.resolve()


def test_relative_allowed_root_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be an absolute path"):
        validate_repo_path(str(tmp_path), allowed_roots=["relative/root"])
