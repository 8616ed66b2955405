"""The pieces of the chunker (`server.indexer.chunker` is its entry point).

- `grammars`: per-language tree-sitter node-type tables, the one list of parsed languages
- `describers`: name, kind and body of a definition node, per language where needed
- `code`: the code splitter (tree walk, outlines, split/merge by size)
- `text`: Markdown/reStructuredText sections and line windows
- `limits`: size limits shared by all of them
"""
