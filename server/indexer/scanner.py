"""Walks a repository: which files to index, honouring ignore files, and how to read them safely."""

from __future__ import annotations

import errno
import hashlib
import os
import re
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from server.fs.confined import DIR_FLAGS, PathEscapeError, open_beneath, open_directory, read_beneath, split_relative
from server.fs.names import escape_name, unescape_name
from server.indexer.languages import detect_language, language_from_shebang
from server.indexer.scope import PathScope
from server.indexer.types import ScannedFile

DEFAULT_MAX_FILE_SIZE = 1_048_576
DEFAULT_IGNORE_FILE = ".codebase-mcp/ignore"
BINARY_SNIFF_BYTES = 8192
# Longer (escaped) relative paths are skipped: PostgreSQL cannot index such a key (~2.7 kB at most).
MAX_REL_PATH_BYTES = 2000

# Never entered, whatever an ignore file says: other tools' data and version-control internals.
ALWAYS_SKIPPED_DIRS: frozenset[str] = frozenset({".git", ".hg", ".svn", ".bzr", "_darcs", ".codebase-mcp"})
# A directory holding one of these is a Python virtualenv or conda environment.
ENVIRONMENT_MARKERS: frozenset[str] = frozenset({"pyvenv.cfg", "conda-meta"})

# Skipped unless an ignore file re-includes them with a `!` pattern.
DEFAULT_SKIPPED_DIRS: frozenset[str] = frozenset(
    {
        "node_modules", "bower_components", "jspm_packages", "__pycache__", ".venv", "venv",
        ".tox", ".nox", ".eggs", ".mypy_cache", ".pytest_cache",
        ".ruff_cache", ".pytype", ".pyre", ".hypothesis", ".benchmarks", ".ipynb_checkpoints",
        "htmlcov", ".coverage_html", ".idea", ".vscode", ".vs", ".gradle", ".next", ".nuxt", ".svelte-kit",
        ".parcel-cache", ".turbo", ".cache", ".terraform", ".direnv", ".pixi", ".serverless",
        ".angular", ".yarn", ".pnpm-store", "site-packages", "Pods", "DerivedData", "vendor",
    }
)  # fmt: skip
DEFAULT_SKIPPED_DIR_SUFFIXES: tuple[str, ...] = (".egg-info", ".dist-info")
# Build output directories, skipped by default where a build manifest beside them says they are
# output: `doc/build/` holding hand-written documentation (as in SQLAlchemy) is kept.
BUILD_OUTPUT_DIRS: frozenset[str] = frozenset({"build", "dist", "target", "_build"})
BUILD_MANIFESTS: frozenset[str] = frozenset(
    {
        "setup.py", "setup.cfg", "pyproject.toml", "package.json", "Cargo.toml", "pom.xml", "build.gradle",
        "build.gradle.kts", "settings.gradle", "settings.gradle.kts", "build.sbt", "CMakeLists.txt",
        "Makefile", "makefile", "GNUmakefile", "meson.build", "configure", "go.mod", "composer.json",
        "Gemfile", "mix.exs", "conf.py", "make.bat",
    }
)  # fmt: skip
DEFAULT_SKIPPED_FILES: frozenset[str] = frozenset(
    {
        "package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml", "bun.lockb",
        "poetry.lock", "pipfile.lock", "pdm.lock", "uv.lock", "cargo.lock", "composer.lock",
        "gemfile.lock", "go.sum", "flake.lock", "packages.lock.json", ".ds_store", "thumbs.db",
    }
)  # fmt: skip
DEFAULT_SKIPPED_SUFFIXES: tuple[str, ...] = (
    ".min.js", ".min.css", ".min.mjs", ".map", ".pyc", ".pyo", ".pyd", ".so", ".dylib", ".dll",
    ".exe", ".o", ".obj", ".a", ".lib", ".class", ".jar", ".war", ".whl", ".egg", ".log", ".swp",
    ".svg",  # text, but drawing paths: noise for search
)  # fmt: skip
# Editors' swap, backup, lock and atomic-save files: never worth indexing, and churn while editing.
EDITOR_TEMP_SUFFIXES: tuple[str, ...] = ("~", ".swp", ".swo", ".swx", ".swn", "___jb_tmp___", "___jb_old___")
EDITOR_TEMP_NAMES: frozenset[str] = frozenset({"4913"})  # vim's "can I write here" probe
# Skipped without reading: their content is binary by definition.
BINARY_SUFFIXES: frozenset[str] = frozenset(
    {
        ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".ico", ".icns", ".webp", ".tif", ".tiff", ".psd",
        ".woff", ".woff2", ".ttf", ".otf", ".eot", ".zip", ".gz", ".tgz", ".bz2", ".xz", ".7z",
        ".rar", ".tar", ".zst", ".lz4", ".mp3", ".mp4", ".wav", ".ogg", ".flac", ".avi", ".mov",
        ".mkv", ".webm", ".pdf", ".doc", ".docx", ".xls", ".xlsx", ".ppt", ".pptx", ".odt", ".mo",
        ".sqlite", ".sqlite3", ".db", ".npy", ".npz", ".pkl", ".pickle", ".parquet", ".feather",
        ".h5", ".hdf5", ".onnx", ".pt", ".pth", ".ckpt", ".safetensors", ".bin", ".wasm", ".dmg",
        ".iso", ".img", ".lzma", ".shp", ".shx", ".dbf", ".mmdb", ".graffle",
        ".deb", ".rpm", ".msi", ".apk", ".ipa", ".xcf", ".blend", ".fbx", ".glb",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ScanResult:
    files: list[ScannedFile]  # sorted by rel_path
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    # With `paths`: the requested paths the ignore rules exclude (the path, or a folder above it).
    ignored_paths: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class LoadedFile:
    file: ScannedFile
    text: str  # decoded, "\r\n" normalised to "\n"
    content_hash: str  # sha256 hex of the raw bytes
    line_count: int
    language: str | None  # the scanner's guess, refined by the shebang when that was None


@dataclass(frozen=True, slots=True)
class _Layer:
    """One ignore file: its patterns apply to paths relative to `base` ("" or "dir/sub/").

    pathspec tries patterns one by one in Python, which is slow for long ignore files, so two
    combined regexes first tell whether any pattern can match at all: one for the patterns that
    match a single name anywhere (most of them), tried on the entry's name, one for the rest,
    tried on its path. Ancestor directories were checked already (ignored ones are never entered).
    Only when one of them matches does pathspec give the exact answer.
    """

    base: str
    spec: pathspec.GitIgnoreSpec
    name_patterns: re.Pattern[str] | None
    path_patterns: re.Pattern[str] | None

    def decision(self, rel: str) -> bool | None:
        """`rel` is relative to the repository root and ends with "/" for directories."""
        if not rel.startswith(self.base):
            return None
        sub = rel[len(self.base) :]
        if self.path_patterns is None or self.path_patterns.search(sub) is None:
            if self.name_patterns is None:
                return None
            name_start = sub.rfind("/", 0, len(sub) - 1) + 1
            if self.name_patterns.match(sub, name_start) is None:
                return None
        return self.spec.check_file(sub).include


_NAMED_GROUP = re.compile(r"\(\?P<\w+>")
_ANY_DIRS_PREFIX = "^(?:.+/)?"


def _combine(regexes: list[str]) -> re.Pattern[str] | None:
    unique = dict.fromkeys(regexes)  # long ignore files often repeat patterns
    return re.compile("|".join(f"(?:{r})" for r in unique)) if unique else None


def _read_layer(path: Path, base: str) -> _Layer | None:
    try:
        # No symlink followed anywhere on the way: an ignore file that is one is not read either.
        data, _ = read_beneath("/", split_relative(str(path).lstrip("/")), 4 * 1024 * 1024)
        lines = data.decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    spec = pathspec.GitIgnoreSpec.from_lines(lines)
    name_regexes: list[str] = []
    path_regexes: list[str] = []
    for pattern in spec.patterns:
        if not isinstance(pattern, pathspec.RegexPattern) or pattern.include is None:
            continue
        if pattern.regex is None:
            continue
        source = _NAMED_GROUP.sub("(?:", str(pattern.regex.pattern))
        rest = source.removeprefix(_ANY_DIRS_PREFIX)
        if rest != source and "/" not in rest.replace("[^/]", "").replace("(?:/)", ""):
            name_regexes.append(rest)
        else:
            path_regexes.append(source)
    if not name_regexes and not path_regexes:
        return None
    return _Layer(base, spec, _combine(name_regexes), _combine(path_regexes))


def _decision(layers: list[_Layer], rel: str) -> bool | None:
    """True: ignored, False: explicitly re-included, None: no ignore file says anything.

    `layers` runs from highest to lowest precedence; `rel` ends with "/" for directories.
    """
    for layer in layers:
        result = layer.decision(rel)
        if result is not None:
            return result
    return None


def is_editor_temp(name: str) -> bool:
    """Vim swap files and write probes, Emacs backups, locks and autosaves, JetBrains atomic saves."""
    return (
        name.endswith(EDITOR_TEMP_SUFFIXES)
        or name.startswith(".#")
        or (len(name) > 1 and name[0] == "#" and name[-1] == "#")
        or name in EDITOR_TEMP_NAMES
    )


def _skipped_by_default(name: str, is_dir: bool, siblings: set[str]) -> bool:
    if is_dir:
        if name in BUILD_OUTPUT_DIRS:
            return not BUILD_MANIFESTS.isdisjoint(siblings)
        return name in DEFAULT_SKIPPED_DIRS or name.endswith(DEFAULT_SKIPPED_DIR_SUFFIXES)
    lower = name.lower()
    return lower in DEFAULT_SKIPPED_FILES or lower.endswith(DEFAULT_SKIPPED_SUFFIXES) or is_editor_temp(name)


def _ignored(layers: list[_Layer], name: str, rel: str, is_dir: bool, siblings: set[str]) -> bool:
    """Whether an entry (`rel` relative to the root, `siblings` the names beside it) is left out
    by the rules: version-control and tool folders, ignore files, then the defaults."""
    if is_dir and name in ALWAYS_SKIPPED_DIRS:
        return True
    decision = _decision(layers, rel + "/" if is_dir else rel) if layers else None
    return bool(decision) or (decision is None and _skipped_by_default(name, is_dir, siblings))


def _is_binary_name(name: str) -> bool:
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in BINARY_SUFFIXES


def scan_repository(
    root: Path,
    *,
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
    ignore_file: str = DEFAULT_IGNORE_FILE,
    paths: Collection[str] | None = None,
) -> ScanResult:
    """List the indexable files under `root` without reading them.

    Never follows symbolic links, so nothing outside `root` is ever listed: directories are
    walked through descriptors opened with O_NOFOLLOW from '/' down (`server/fs/confined.py`), so
    a directory swapped for a symlink mid-walk is not entered. `root` must be a resolved path (it
    is not resolved here: resolving would follow a symlink put in its place). Ignored directories
    are pruned without being entered. `rel_path` is escaped (`server/fs/names.py`).

    With `paths` (relative to `root`, escaped like `rel_path`; a folder stands for everything
    below it) only those are listed, by the same rules, and `ignored_paths` tells which of them
    the rules exclude (escaped too).
    """
    root = Path(os.path.abspath(root))
    skipped: Counter[str] = Counter()
    files: list[ScannedFile] = []
    scope = PathScope(unescape_name(p) for p in paths) if paths is not None else None

    # Precedence, highest first: the project ignore file, then .gitignore files (deeper ones
    # first, pushed while descending), then .git/info/exclude.
    top: list[_Layer] = []
    project = _read_layer(root / ignore_file, "") if ignore_file else None
    exclude = _read_layer(root / ".git" / "info" / "exclude", "")
    gitignores: list[_Layer] = []

    def walk(dir_fd: int, directory: str, rel_dir: str) -> None:
        try:
            with os.scandir(dir_fd) as it:
                entries = list(it)
        except OSError:
            skipped["unreadable"] += 1
            return
        names = {e.name for e in entries}
        if rel_dir and not ENVIRONMENT_MARKERS.isdisjoint(names):
            skipped["ignored"] += 1  # a virtualenv, whatever its name
            if scope is not None:
                scope.exclude(rel_dir[:-1])
            return
        pushed = False
        if ".gitignore" in names:
            layer = _read_layer(Path(directory, ".gitignore"), rel_dir)
            if layer is not None:
                gitignores.append(layer)
                pushed = True
        layers = top + gitignores[::-1] + ([exclude] if exclude else [])
        if scope is not None and rel_dir in scope.children:
            scope.judge_missing(
                rel_dir,
                names,
                lambda name, rel, is_dir: (
                    _ignored(layers, name, rel, is_dir, names) or (not is_dir and _is_binary_name(name))
                ),
            )

        for entry in entries:
            name = entry.name
            if scope is not None and not scope.wants(rel_dir + name):
                continue
            if entry.is_symlink():
                skipped["symlink"] += 1
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
                is_file = not is_dir and entry.is_file(follow_symlinks=False)
            except OSError:
                skipped["unreadable"] += 1
                continue
            if not is_dir and not is_file:
                skipped["special"] += 1  # sockets, fifos, devices
                continue
            rel = rel_dir + name
            if _ignored(layers, name, rel, is_dir, names):
                skipped["ignored"] += 1
                if scope is not None:
                    scope.exclude(rel)
                continue
            if is_dir:
                try:
                    child = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
                except OSError:  # swapped for a symlink since it was listed, or unreadable
                    skipped["symlink" if os.path.islink(os.path.join(directory, name)) else "unreadable"] += 1
                    continue
                try:
                    walk(child, os.path.join(directory, name), rel + "/")
                finally:
                    os.close(child)
                continue
            if _is_binary_name(name):
                skipped["binary"] += 1
                if scope is not None:
                    scope.exclude(rel)
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                skipped["unreadable"] += 1
                continue
            if st.st_size > max_file_size:
                skipped["too_large"] += 1
                continue
            shown = escape_name(rel)
            if len(shown.encode()) > MAX_REL_PATH_BYTES:
                skipped["path_too_long"] += 1
                continue
            files.append(ScannedFile(Path(directory, name), shown, st.st_size, st.st_mtime_ns, detect_language(shown)))
        if pushed:
            gitignores.pop()

    if project is not None:
        top.append(project)
    try:
        root_fd = open_directory(root)
    except PathEscapeError as exc:
        raise PathEscapeError(exc.errno, f"repository root {root}: {exc.strerror}; pass its resolved path") from None
    try:
        walk(root_fd, str(root), "")
    finally:
        os.close(root_fd)
    files.sort(key=lambda f: f.rel_path)
    ignored = frozenset(escape_name(p) for p in scope.ignored) if scope is not None else frozenset()
    return ScanResult(files, dict(skipped), ignored)


def decode_text(data: bytes) -> str:
    """UTF-8 (BOM stripped), else Windows-1252, else Latin-1; never raises. Normalises CRLF."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
    return text.replace("\r\n", "\n") if "\r" in text else text


def load_file(f: ScannedFile, max_file_size: int = DEFAULT_MAX_FILE_SIZE) -> LoadedFile | str:
    """Read one scanned file, or say why it is skipped ("missing", "symlink", "too_large", "binary", ...)."""
    try:
        # Walked from '/' without following any symlink: a file, or any directory above it, swapped
        # for a symlink after the scan is never followed (`server/fs/confined.py`).
        parts = split_relative(unescape_name(f.rel_path))
        root = f.path.parents[len(parts) - 1]
        fd = open_beneath(root, parts)
    except FileNotFoundError:
        return "missing"
    except PathEscapeError as exc:
        return "symlink" if exc.errno == errno.ELOOP else "special"
    except OSError:
        return "unreadable"
    try:
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(max_file_size + 1)
    except OSError:
        return "unreadable"
    if len(data) > max_file_size:
        return "too_large"
    if b"\0" in data[:BINARY_SNIFF_BYTES]:
        return "binary"
    text = decode_text(data)
    line_count = text.count("\n") + (1 if text and not text.endswith("\n") else 0)
    language = f.language
    if language is None and data.startswith(b"#!"):
        language = language_from_shebang(data[:256])
    return LoadedFile(f, text, hashlib.sha256(data).hexdigest(), line_count, language)
