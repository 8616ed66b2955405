"""Training and dev text for distilling the static model: code from pinned PyPI/npm packages.

The packages are downloaded with ``pip download`` (source distributions) and ``npm pack`` into a
cache directory and chunked with the product's own chunker, so the static model learns from
chunks shaped exactly like the ones it will embed.

Reserved for the quality benchmark, and never read here (nor any package vendoring them):
see ``RESERVED``. Files whose path names a reserved library, vendored trees and bundles are
skipped as well.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from server.indexer.chunker import chunk_file
from server.indexer.languages import detect_language

RESERVED = frozenset(
    {
        # Python
        "django", "sqlalchemy", "sympy", "flask", "werkzeug", "requests", "click",
        # npm
        "lodash", "axios", "express", "date-fns", "rxjs", "zod", "ajv", "commander", "yargs",
        # Rust/C from PyPI sdists
        "pydantic-core", "pydantic_core", "orjson", "tokenizers", "rpds-py", "rpds", "jiter",
        "cryptography", "ujson", "msgpack", "markupsafe", "zstandard",
    }
)  # fmt: skip

# (registry, name, version, role). "dev" packages are held out of training: they make the dev
# retrieval set that chose the recipe.
PACKAGES: tuple[tuple[str, str, str, str], ...] = (
    # Python
    ("pypi", "attrs", "26.1.0", "train"),
    ("pypi", "rich", "15.0.0", "train"),
    ("pypi", "pygments", "2.21.0", "train"),
    ("pypi", "jinja2", "3.1.6", "train"),
    ("pypi", "httpx", "0.28.1", "train"),
    ("pypi", "starlette", "1.10.0", "train"),
    ("pypi", "arrow", "1.4.0", "train"),
    ("pypi", "marshmallow", "4.4.0", "train"),
    ("pypi", "black", "26.10.1", "train"),
    ("pypi", "isort", "9.0.2", "train"),
    ("pypi", "pyflakes", "4.1.0", "train"),
    ("pypi", "tornado", "6.6.1", "train"),
    ("pypi", "bottle", "0.13.4", "train"),
    ("pypi", "docutils", "0.23", "train"),
    ("pypi", "pyparsing", "3.3.3", "train"),
    ("pypi", "tqdm", "4.70.1", "train"),
    ("pypi", "sqlparse", "0.6.1", "train"),
    ("pypi", "peewee", "4.5.3", "train"),
    ("pypi", "networkx", "3.6.1", "train"),
    ("pypi", "paramiko", "5.1.0", "train"),
    # C, C++, Java, Rust (in PyPI source distributions)
    ("pypi", "lz4", "4.4.5", "train"),
    ("pypi", "brotli", "1.2.1", "train"),
    ("pypi", "xxhash", "4.1.0", "train"),
    ("pypi", "mmh3", "5.3.1", "train"),
    ("pypi", "simplejson", "4.3.0", "train"),
    ("pypi", "psutil", "7.2.2", "train"),
    ("pypi", "multidict", "7.2.1", "train"),
    ("pypi", "bitarray", "3.12.3", "train"),
    ("pypi", "jpype1", "1.7.1", "train"),
    ("pypi", "maturin", "1.16.0", "train"),
    ("pypi", "bcrypt", "5.0.0", "train"),
    # JavaScript / TypeScript
    ("npm", "ramda", "0.32.0", "train"),
    ("npm", "moment", "2.31.0", "train"),
    ("npm", "dayjs", "1.11.23", "train"),
    ("npm", "immer", "11.2.13", "train"),
    ("npm", "redux", "5.0.1", "train"),
    ("npm", "semver", "7.8.6", "train"),
    ("npm", "ws", "8.23.0", "train"),
    ("npm", "koa", "3.3.0", "train"),
    ("npm", "joi", "18.3.2", "train"),
    ("npm", "luxon", "3.7.2", "train"),
    ("npm", "acorn", "8.19.0", "train"),
    ("npm", "marked", "18.2.1", "train"),
    ("npm", "markdown-it", "15.0.3", "train"),
    ("npm", "handlebars", "4.7.10", "train"),
    ("npm", "async", "3.2.6", "train"),
    ("npm", "bluebird", "3.7.2", "train"),
    ("npm", "qs", "6.17.1", "train"),
    ("npm", "immutable", "5.2.1", "train"),
    ("npm", "mobx", "7.1.3", "train"),
    ("npm", "preact", "11.2.0", "train"),
    ("npm", "hono", "4.13.19", "train"),
    ("npm", "effect", "4.1.0", "train"),
    # Held out: the dev retrieval set
    ("pypi", "boltons", "26.2.0", "dev"),
    ("pypi", "toolz", "1.2.0", "dev"),
    ("pypi", "more-itertools", "11.2.1", "dev"),
    ("npm", "underscore", "1.13.8", "dev"),
)

_SKIP_DIRS = frozenset(
    {"vendor", "_vendor", "vendored", "third_party", "thirdparty", "node_modules", "dist", "umd", "bundles",
     "min", "build", "docs", "doc", "locale", "locales", "test-data", "testdata", "fixtures", "benchmarks",
     "examplefiles", "snippets"}
)  # fmt: skip
_CODE_LANGUAGES = frozenset(
    {"python", "javascript", "typescript", "tsx", "rust", "c", "cpp", "go", "java", "kotlin", "csharp"}
)
_MAX_FILE_BYTES = 200_000


@dataclass(frozen=True, slots=True)
class CodeChunk:
    package: str
    rel_path: str
    symbol: str | None
    content: str
    language: str
    kind: str


def download(cache: Path, registry: str, name: str, version: str) -> Path:
    """The package archive in ``cache``, fetched with pip or npm when not there yet."""
    cache.mkdir(parents=True, exist_ok=True)
    found = _archive(cache, registry, name, version)
    if found is not None:
        return found
    if registry == "pypi":
        # --no-binary for this package only: its build backend may come as a wheel.
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", name]
        command += ["-d", str(cache), f"{name}=={version}"]
    else:
        command = ["npm", "pack", "--silent", "--pack-destination", str(cache), f"{name}@{version}"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    found = _archive(cache, registry, name, version)
    if found is None:
        raise FileNotFoundError(f"{registry} {name}=={version} downloaded no archive into {cache}")
    return found


def _archive(cache: Path, registry: str, name: str, version: str) -> Path | None:
    stems = {name, name.replace("-", "_"), name.lower(), name.replace("-", "_").lower()}
    suffix = ".tar.gz" if registry == "pypi" else ".tgz"
    for stem in stems:
        candidate = cache / f"{stem}-{version}{suffix}"
        if candidate.exists():
            return candidate
    return None


_RESERVED_IN_PATH = re.compile(
    "|".join(rf"(?<![a-z0-9]){re.escape(name.replace('_', '-'))}(?![a-z0-9])" for name in sorted(RESERVED))
)


def _names_reserved(path: str) -> bool:
    """True when any part of ``path`` (split at non-alphanumerics) names a reserved library."""
    return _RESERVED_IN_PATH.search(path.lower().replace("_", "-")) is not None


def _usable(member: str, has_src: bool) -> bool:
    parts = member.split("/")[1:]  # drop the archive's top directory
    if not parts or (has_src and parts[0] != "src"):
        return False
    if any(part in _SKIP_DIRS for part in parts[:-1]):
        return False
    name = parts[-1]
    return not (name.endswith((".min.js", ".map", ".d.ts", ".d.mts", ".d.cts")) or _names_reserved(member))


def package_files(archive: Path) -> Iterator[tuple[str, str, str]]:
    """(rel_path, language, text) of each code file in a package archive worth learning from."""
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.size <= _MAX_FILE_BYTES]
        tops = {m.name.split("/")[1] for m in members if m.name.count("/") >= 2}
        has_src = archive.name.endswith(".tgz") and "src" in tops
        for member in sorted(members, key=lambda m: m.name):
            if not _usable(member.name, has_src):
                continue
            rel_path = member.name.split("/", 1)[1]
            language = detect_language(rel_path)
            if language not in _CODE_LANGUAGES:
                continue
            handle = tar.extractfile(member)
            if handle is None:
                continue
            text = handle.read().decode("utf-8", "replace")
            yield rel_path, language, text


def package_chunks(archive: Path, package: str) -> list[CodeChunk]:
    out: list[CodeChunk] = []
    seen: set[str] = set()
    for rel_path, language, text in package_files(archive):
        for chunk in chunk_file(text, language):
            digest = hashlib.blake2b(chunk.content.encode(), digest_size=12).hexdigest()
            if digest in seen or len(chunk.content.strip()) < 40:
                continue
            seen.add(digest)
            out.append(CodeChunk(package, rel_path, chunk.symbol, chunk.content, language, chunk.kind))
    return out


def load_packages(cache: Path, role: str) -> dict[str, list[CodeChunk]]:
    """Chunks per package (``name==version``) of every package with this role."""
    result: dict[str, list[CodeChunk]] = {}
    for registry, name, version, package_role in PACKAGES:
        if package_role != role:
            continue
        if name.lower() in RESERVED:
            raise ValueError(f"{name} is reserved for the quality benchmark")
        archive = download(cache, registry, name, version)
        result[f"{name}=={version}"] = package_chunks(archive, name)
    return result
