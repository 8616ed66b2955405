"""Downloads a pinned library with its registry's own client (npm pack, pip download) and unpacks
it once under the cache; later calls reuse it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from bench.quality.suite import CACHE, SHARED_SDISTS, Library


def _archive(lib: Library, downloads: Path) -> Path:
    downloads.mkdir(parents=True, exist_ok=True)
    if lib.registry == "npm":
        name = f"{lib.name.lstrip('@').replace('/', '-')}-{lib.version}.tgz"
        if not (downloads / name).exists():
            subprocess.run(["npm", "pack", f"{lib.name}@{lib.version}", "--silent", "--pack-destination",
                            str(downloads)], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        return downloads / name
    stem = {lib.name.lower(), lib.name.lower().replace("-", "_")}
    for folder in (downloads, SHARED_SDISTS):
        for f in sorted(folder.glob("*")) if folder.is_dir() else []:
            base = f.name.lower()
            if any(base.startswith(f"{s}-{lib.version}.") for s in stem) and base.endswith((".tar.gz", ".zip")):
                return f
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", lib.name,
         "-d", str(downloads), f"{lib.name}=={lib.version}"],
        check=True,
    )  # fmt: skip
    return _archive(lib, downloads)


def _unpack(archive: Path, dest: Path) -> None:
    """Unpacks into `dest`, dropping the archive's single top-level directory."""
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            z.extractall(tmp)
    else:
        with tarfile.open(archive) as t:
            t.extractall(tmp, filter="data")
    entries = list(tmp.iterdir())
    root = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
    shutil.rmtree(dest, ignore_errors=True)
    root.rename(dest)
    shutil.rmtree(tmp, ignore_errors=True)


def source_tree(lib: Library) -> Path:
    """The library as it ships, unpacked (downloaded first if needed)."""
    dest = CACHE / "src" / lib.key
    if not (CACHE / "src" / f".{lib.key}.complete").exists():
        _unpack(_archive(lib, CACHE / "archives"), dest)
        (CACHE / "src" / f".{lib.key}.complete").touch()
    return dest
