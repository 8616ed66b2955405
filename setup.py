"""Installs the product's folders inside the `codebase_mcp` package (see codebase_mcp/__init__.py);
everything else is in pyproject.toml."""

from setuptools import find_namespace_packages, setup  # type: ignore[import-untyped]

FOLDERS = ("server", "listener", "migrations", "web")
PACKAGES = find_namespace_packages(include=[*FOLDERS, *(f"{f}.*" for f in FOLDERS)])

setup(
    packages=["codebase_mcp", *(f"codebase_mcp.{p}" for p in PACKAGES)],
    package_dir={"codebase_mcp": "codebase_mcp", **{f"codebase_mcp.{f}": f for f in FOLDERS}},
)
