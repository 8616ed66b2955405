"""Language detection from a file's name and, failing that, its shebang line."""

from __future__ import annotations

import re

from server.indexer.chunking.grammars import GRAMMARS

# The languages the chunker parses with tree-sitter grammars.
TREE_SITTER_LANGUAGES: frozenset[str] = frozenset(GRAMMARS)

# Programs without a grammar here are still code; markup, styles, prose and data are not.
_OTHER_CODE: frozenset[str] = frozenset(
    {"sql", "perl", "lua", "r", "dart", "elixir", "erlang", "haskell", "clojure", "ocaml", "fsharp",
     "objective-c", "groovy", "julia", "zig", "nim", "powershell", "fish", "vue", "svelte", "cython",
     "cmake", "makefile", "dockerfile"}
)  # fmt: skip

_EXTENSIONS: dict[str, str] = {
    # languages with grammars
    ".py": "python", ".pyi": "python", ".pyw": "python", ".py-tpl": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".c++": "cpp", ".hh": "cpp", ".hpp": "cpp",
    ".hxx": "cpp", ".h++": "cpp", ".ipp": "cpp", ".tpp": "cpp", ".inl": "cpp",
    ".cs": "csharp",
    ".rb": "ruby", ".rake": "ruby", ".gemspec": "ruby", ".ru": "ruby",
    ".php": "php", ".phtml": "php",
    ".kt": "kotlin", ".kts": "kotlin",
    ".swift": "swift",
    ".scala": "scala", ".sc": "scala", ".sbt": "scala",
    ".sh": "bash", ".bash": "bash", ".zsh": "bash", ".ksh": "bash", ".bats": "bash",
    # other code
    ".sql": "sql", ".pl": "perl", ".pm": "perl", ".lua": "lua", ".r": "r", ".dart": "dart",
    ".ex": "elixir", ".exs": "elixir", ".erl": "erlang", ".hs": "haskell", ".clj": "clojure",
    ".ml": "ocaml", ".mli": "ocaml", ".fs": "fsharp", ".m": "objective-c", ".mm": "objective-c",
    ".groovy": "groovy", ".gradle": "groovy", ".jl": "julia", ".zig": "zig", ".nim": "nim",
    ".ps1": "powershell", ".fish": "fish", ".vue": "vue", ".svelte": "svelte",
    ".pyx": "cython", ".pxd": "cython",
    ".css": "css", ".scss": "scss", ".sass": "scss", ".less": "less",
    ".html": "html", ".htm": "html", ".xhtml": "html",
    ".jinja": "html", ".jinja2": "html", ".j2": "html", ".djhtml": "html", ".tmpl": "html",
    ".hbs": "html", ".mustache": "html", ".ejs": "html", ".erb": "html",
    ".cmake": "cmake", ".mk": "makefile", ".mak": "makefile", ".dockerfile": "dockerfile",
    # documents and data
    ".md": "markdown", ".markdown": "markdown", ".mdx": "markdown",
    ".rst": "rst", ".rest": "rst",
    ".txt": "text", ".text": "text", ".adoc": "text", ".asciidoc": "text", ".tex": "text",
    ".json": "json", ".jsonc": "json", ".json5": "json", ".ipynb": "json", ".geojson": "json",
    ".yaml": "yaml", ".yml": "yaml",
    ".toml": "toml",
    ".ini": "ini", ".cfg": "ini", ".conf": "ini", ".properties": "ini", ".editorconfig": "ini",
    ".xml": "xml", ".xsd": "xml", ".xsl": "xml", ".svg": "xml", ".plist": "xml", ".csproj": "xml",
    ".po": "po", ".pot": "po",
    ".csv": "csv", ".tsv": "csv",
    ".proto": "protobuf", ".graphql": "graphql", ".gql": "graphql",
    ".tf": "hcl", ".hcl": "hcl",
}  # fmt: skip

_FILENAMES: dict[str, str] = {
    "dockerfile": "dockerfile", "containerfile": "dockerfile",
    "makefile": "makefile", "gnumakefile": "makefile",
    "cmakelists.txt": "cmake",
    "gemfile": "ruby", "rakefile": "ruby", "guardfile": "ruby", "podfile": "ruby", "vagrantfile": "ruby",
    "brewfile": "ruby", "fastfile": "ruby", "capfile": "ruby",
    "sconstruct": "python", "sconscript": "python", "snakefile": "python",
    "build.bazel": "python",
    "jenkinsfile": "groovy",
    ".bashrc": "bash", ".bash_profile": "bash", ".profile": "bash", ".zshrc": "bash", "pkgbuild": "bash",
    ".gitignore": "text", ".dockerignore": "text", ".gitattributes": "text", ".npmignore": "text",
    ".env.example": "ini", ".flake8": "ini", ".pylintrc": "ini", ".coveragerc": "ini",
    "pipfile": "toml",
    "readme": "text", "license": "text", "licence": "text", "copying": "text", "authors": "text",
    "contributors": "text", "changelog": "text", "changes": "text", "notice": "text", "todo": "text",
    "manifest.in": "text", "install": "text", "news": "text", "history": "text",
}  # fmt: skip

_SHEBANG = re.compile(rb"^#![ \t]*(\S+)(?:[ \t]+(\S+))?")
_INTERPRETERS: dict[str, str] = {
    "python": "python", "pypy": "python",
    "node": "javascript", "nodejs": "javascript", "deno": "typescript", "bun": "javascript",
    "ts-node": "typescript", "tsx": "typescript",
    "bash": "bash", "sh": "bash", "zsh": "bash", "dash": "bash", "ksh": "bash",
    "ruby": "ruby", "php": "php", "perl": "perl", "lua": "lua", "rscript": "r",
}  # fmt: skip
_VERSION_SUFFIX = re.compile(r"[\d.]+$")


def detect_language(rel_path: str, head: bytes | None = None) -> str | None:
    """Canonical language of a file, or None when neither its name nor its shebang tells."""
    name = rel_path[rel_path.rfind("/") + 1 :].lower()
    by_name = _FILENAMES.get(name)
    if by_name is not None:
        return by_name
    if name.startswith("dockerfile.") or name.endswith(".dockerfile"):
        return "dockerfile"
    if name.startswith("makefile."):
        return "makefile"
    dot = name.rfind(".")
    if dot > 0:
        # ".html" templates etc. first by the last suffix; "x.html.j2"-style falls back to text.
        by_ext = _EXTENSIONS.get(name[dot:])
        if by_ext is not None:
            return by_ext
    if head is not None:
        return language_from_shebang(head)
    return None


def language_from_shebang(head: bytes) -> str | None:
    """Language named by a `#!` line (`#!/usr/bin/env python3`, `#!/bin/sh`), if any."""
    match = _SHEBANG.match(head)
    if match is None:
        return None
    program = match.group(1).rsplit(b"/", 1)[-1].decode("ascii", "replace")
    if program == "env" and match.group(2) is not None:
        program = match.group(2).decode("ascii", "replace")
        if program == "-S":  # `env -S python3 -u`: the interpreter is the next word
            rest = head[match.end(2) :].split(None, 1)
            program = rest[0].decode("ascii", "replace") if rest else ""
    program = _VERSION_SUFFIX.sub("", program.lower()) or program.lower()
    return _INTERPRETERS.get(program)


def is_code(language: str | None) -> bool:
    """True for programming languages (as opposed to prose, configuration and data)."""
    return language is not None and (language in TREE_SITTER_LANGUAGES or language in _OTHER_CODE)


# Every language a chunk can be stored with ("text": files no rule recognises).
KNOWN_LANGUAGES: frozenset[str] = frozenset(
    {*TREE_SITTER_LANGUAGES, *_OTHER_CODE, *_EXTENSIONS.values(), *_FILENAMES.values(), *_INTERPRETERS.values(), "text"}
)
# What people type for a language filter → the stored name.
LANGUAGE_ALIASES: dict[str, str] = {
    "py": "python", "python3": "python", "js": "javascript", "node": "javascript", "ts": "typescript",
    "golang": "go", "rs": "rust", "c++": "cpp", "cxx": "cpp", "c#": "csharp", "cs": "csharp", "rb": "ruby",
    "kt": "kotlin", "sh": "bash", "shell": "bash", "zsh": "bash", "md": "markdown", "yml": "yaml",
    "objc": "objective-c", "docker": "dockerfile", "make": "makefile", "txt": "text",
}  # fmt: skip


def canonical_language(name: str) -> str | None:
    """The stored language name for a filter value (`py`, `Python`, `c++` ...), or None if unknown."""
    key = name.strip().lower()
    key = LANGUAGE_ALIASES.get(key, key)
    return key if key in KNOWN_LANGUAGES else None
