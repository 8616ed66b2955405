"""Validation of user-supplied repository paths before anything touches the filesystem.

Rules, checked in this order so the most specific message wins:

1. not empty or whitespace-only;
2. no NUL byte or other control character;
3. no ``..`` segment, split on ``/`` and ``\\``, in the raw text or in any percent-decoded form of it
   (up to 6 levels deep; ``%uXXXX``, overlong UTF-8 such as ``%c0%ae`` and full-width dots included);
4. no Windows forms (drive letters, UNC prefixes, backslashes);
5. absolute (``~`` is not expanded);
6. every component exists and can be searched; symlinks are followed one component at a time;
7. the result is a readable directory;
8. with ``allowed_roots``: the resolved path lies inside one of the (resolved) roots.

Symlink rule: without ``allowed_roots`` a symlink must resolve inside the directory that
contains it (``/srv/repos/app -> /srv/repos/releases/app`` is fine, ``/srv/repos/app -> /etc`` is
not); so a path can never lead outside the tree it names.  With ``allowed_roots`` that rule is
replaced by the roots: symlinks may point anywhere inside an allowed root, and a path whose
symlinks lead outside every root is rejected as an escape.
"""

from __future__ import annotations

import os
import re
import stat
import unicodedata
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import unquote_to_bytes

from server.errors import UserError
from server.fs.confined import open_directory

__all__ = ["RepoPathError", "confirm_root", "validate_directory", "validate_repo_path"]

_MAX_DECODE_ROUNDS = 6
_MAX_PATH_CHARS = 4096  # PATH_MAX on Linux
_MAX_SHOWN_CHARS = 120
_PERCENT_U = re.compile(r"%u([0-9a-fA-F]{4})")
_SEPARATORS = re.compile(r"[/\\]")
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_UNC_PREFIX = re.compile(r"^(\\\\|//)(?![/\\])")
_POSIX_EXAMPLE = "/home/alice/projects/app"


class RepoPathError(UserError, ValueError):
    """A repository path was rejected; the message says why and what to pass instead."""


def _shown(raw: str) -> str:
    """``raw`` quoted for a message, shortened when it is long."""
    if len(raw) <= _MAX_SHOWN_CHARS:
        return repr(raw)
    return f"{raw[: _MAX_SHOWN_CHARS - 20]!r}... ({len(raw)} characters)"


def validate_repo_path(raw: str, *, allowed_roots: Sequence[Path | str] = ()) -> Path:
    """Return the resolved absolute directory ``raw`` names, or raise :class:`RepoPathError`."""
    if len(raw) > _MAX_PATH_CHARS:
        raise RepoPathError(
            f"repo_path is {len(raw)} characters long; a path has at most {_MAX_PATH_CHARS}: "
            "pass the absolute path of a repository directory"
        )
    if not raw.strip():
        raise RepoPathError("repo_path must not be empty; pass the absolute path of a repository directory")
    _reject_control_characters(raw)
    _reject_traversal(raw)
    _reject_windows_forms(raw)
    if not raw.startswith("/"):
        hint = " ('~' is not expanded)" if raw.startswith("~") else ""
        raise RepoPathError(
            f"repo_path must be absolute, got {_shown(raw)}{hint}; pass the full path, e.g. {_POSIX_EXAMPLE}"
        )
    if _under_proc(Path(os.path.normpath(raw))):
        raise RepoPathError(
            f"repo_path {_shown(raw)} is under /proc, whose links lead into other processes' filesystems; "
            f"pass the directory's real path, e.g. {_POSIX_EXAMPLE}"
        )
    named_roots = [_absolute_root(root) for root in allowed_roots]
    roots = [root.resolve() for root in named_roots]
    # '..' is already rejected, so normpath only folds '.' segments and repeated slashes.
    lexical = Path(os.path.normpath(raw))
    resolved, last_link = _resolve_components(raw, lexical, check_links=not roots)
    if _under_proc(resolved):
        raise RepoPathError(f"repo_path {raw[:200]!r} leads into /proc ({str(resolved)[:200]}); pass a real directory")
    _require_readable_directory(raw, resolved)
    if roots and not _inside_any(resolved, roots):
        listed = ", ".join(str(root) for root in roots)
        if last_link is not None and _inside_any(lexical, [*named_roots, *roots]):
            raise RepoPathError(
                f"repo_path {_shown(raw)}: symlink {last_link} leads to {resolved}, which escapes "
                f"the allowed roots ({listed})"
            )
        raise RepoPathError(f"repo_path {_shown(raw)} is outside the allowed roots ({listed})")
    return resolved


def confirm_root(path: Path, *, allowed_roots: Sequence[Path | str] = ()) -> Path:
    """Check, when a job starts, that a path validated earlier still names the same real directory.

    Between queueing and running, a directory can be replaced by a symlink to somewhere else; the
    path is validated again (allowed roots included), must still resolve to itself, and is opened
    from '/' without following any symlink. Files are then read the same way (`server/fs/confined.py`).
    """
    resolved = validate_repo_path(str(path), allowed_roots=allowed_roots)
    if resolved != path:
        raise RepoPathError(
            f"repository {str(path)!r} now resolves to {str(resolved)!r}: a symlink was put in its path after "
            "it was accepted; nothing was indexed. Queue it again with the real path"
        )
    try:
        os.close(open_directory(path))
    except OSError as error:
        raise RepoPathError(f"repository {str(path)!r} cannot be opened safely: {error.strerror}") from None
    return path


def _reject_control_characters(raw: str) -> None:
    if "\x00" in raw:
        raise RepoPathError(f"repo_path contains a NUL byte at position {raw.index(chr(0))}")
    for position, char in enumerate(raw):
        category = unicodedata.category(char)
        if category == "Cc":
            raise RepoPathError(f"repo_path contains control characters (U+{ord(char):04X} at position {position})")
        if category == "Cs":
            raise RepoPathError(
                f"repo_path is not valid UTF-8 (undecodable byte or lone surrogate U+{ord(char):04X} at position "
                f"{position}); rename the directory or pass a path whose names are UTF-8"
            )


def _reject_traversal(raw: str) -> None:
    for form in _decoded_forms(raw):
        normalised = unicodedata.normalize("NFKC", form)
        if ".." in _SEPARATORS.split(form) or ".." in _SEPARATORS.split(normalised):
            encoded = "" if form == raw else " (after percent-decoding)"
            raise RepoPathError(
                f"Path traversal detected in repo_path {_shown(raw)}{encoded}: '..' segments are not "
                f"allowed; pass the normalised absolute path, e.g. {_POSIX_EXAMPLE}"
            )


def _decoded_forms(raw: str) -> Iterator[str]:
    """The raw text, then each successive percent-decoding of it until it stops changing."""
    form = raw
    yield form
    for rounds in range(_MAX_DECODE_ROUNDS + 1):
        decoded = _percent_decode(form)
        if decoded == form:
            return
        if rounds == _MAX_DECODE_ROUNDS:
            break
        form = decoded
        yield form
    raise RepoPathError(
        f"repo_path {_shown(raw)} is percent-encoded more than {_MAX_DECODE_ROUNDS} levels deep; "
        "pass the plain, decoded path"
    )


def _percent_decode(text: str) -> str:
    text = _PERCENT_U.sub(lambda match: chr(int(match.group(1), 16)), text)
    return _decode_utf8_leniently(unquote_to_bytes(text))


def _decode_utf8_leniently(data: bytes) -> str:
    """UTF-8 decoding that also accepts overlong forms (``c0 ae`` is '.') as naive decoders do."""
    out: list[str] = []
    index = 0
    while index < len(data):
        lead = data[index]
        width = 2 if 0xC0 <= lead < 0xE0 else 3 if 0xE0 <= lead < 0xF0 else 4 if 0xF0 <= lead < 0xF8 else 1
        tail = data[index + 1 : index + width]
        if width > 1 and len(tail) == width - 1 and all(0x80 <= byte < 0xC0 for byte in tail):
            code_point = lead & (0x7F >> width)
            for byte in tail:
                code_point = (code_point << 6) | (byte & 0x3F)
            if code_point <= 0x10FFFF:
                out.append(chr(code_point))
                index += width
                continue
        out.append(chr(lead))  # not a sequence: keep the byte as its Latin-1 character
        index += 1
    return "".join(out)


def _reject_windows_forms(raw: str) -> None:
    if _DRIVE_LETTER.match(raw) or _UNC_PREFIX.match(raw) or "\\" in raw:
        raise RepoPathError(
            f"Windows-style paths are not supported (drive letters, UNC shares, backslashes): {_shown(raw)}; "
            f"pass a POSIX absolute path, e.g. {_POSIX_EXAMPLE}"
        )


def _absolute_root(root: Path | str) -> Path:
    path = Path(root)
    if not path.is_absolute():
        raise ValueError(f"allowed root {str(root)!r} must be an absolute path")
    return Path(os.path.normpath(path))


def _resolve_components(raw: str, lexical: Path, *, check_links: bool) -> tuple[Path, Path | None]:
    """Walk ``lexical`` from '/', following symlinks; return the real path and the last symlink."""
    current = Path(lexical.anchor)
    last_link: Path | None = None
    for part in lexical.parts[1:]:
        candidate = current / part
        try:
            mode = candidate.lstat().st_mode
        except FileNotFoundError:
            raise RepoPathError(f"repo_path {_shown(raw)} does not exist ({candidate} is missing)") from None
        except NotADirectoryError:
            raise RepoPathError(f"repo_path {_shown(raw)} is not a directory ({current} is a file)") from None
        except PermissionError:
            raise RepoPathError(
                f"repo_path {_shown(raw)} is not readable by the server process (permission denied on {current})"
            ) from None
        except OSError as error:
            raise RepoPathError(f"repo_path {_shown(raw)} cannot be accessed: {error.strerror}") from None
        if not stat.S_ISLNK(mode):
            current = candidate
            continue
        try:
            target = candidate.resolve(strict=True)
        except FileNotFoundError:
            raise RepoPathError(
                f"repo_path {_shown(raw)} does not exist (symlink {candidate} points to a missing target)"
            ) from None
        except (OSError, RuntimeError) as error:  # RuntimeError: symlink loop on Python 3.11
            raise RepoPathError(f"repo_path {_shown(raw)}: symlink {candidate} cannot be resolved ({error})") from None
        if check_links and not target.is_relative_to(current):
            raise RepoPathError(
                f"repo_path {_shown(raw)}: symlink {candidate} -> {target} escapes its parent directory "
                f"{current}; pass the target path directly or configure allowed roots"
            )
        current, last_link = target, candidate
    return current, last_link


def _require_readable_directory(raw: str, resolved: Path) -> None:
    if not resolved.is_dir():
        raise RepoPathError(f"repo_path {_shown(raw)} is not a directory (it resolves to {resolved})")
    if not os.access(resolved, os.R_OK | os.X_OK):
        raise RepoPathError(
            f"repo_path {_shown(raw)} is not readable by the server process (permission denied on {resolved})"
        )


def _inside_any(path: Path, roots: Sequence[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def _under_proc(path: Path) -> bool:
    return path == _PROC or path.is_relative_to(_PROC)


_PROC = Path("/proc")


def validate_directory(raw: str, *, allowed_roots: Sequence[Path | str] = (), label: str = "directory") -> Path:
    """`validate_repo_path`'s rules for any user-supplied directory (messages name `label`)."""
    try:
        return validate_repo_path(raw, allowed_roots=allowed_roots)
    except RepoPathError as exc:
        message = str(exc).replace("repo_path", label)
        if len(raw) > 200:  # never echo a huge argument back in full
            message = message.replace(repr(raw), f"{raw[:100]!r}... ({len(raw)} characters)").replace(
                raw, f"{raw[:100]}... ({len(raw)} characters)"
            )
        raise RepoPathError(message) from None
