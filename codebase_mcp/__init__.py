"""codebase-mcp as installed: the product's folders live inside this package, imported by their names.

The design card's folders (`server/`, `listener/`, `migrations/`, `web/`) are installed below this
package (`site-packages/codebase_mcp/server`, ...) rather than as top-level packages, so another
distribution that ships a `server` or `web` package can neither overwrite them nor be overwritten
(`tests/e2e/test_installed_names.py`). Their code imports them by their own names (`server.app`):
importing this package puts the folder that holds them first on `sys.path`. In a checkout (an
editable install) that folder is the checkout itself.

Every entry point goes through here: the `codebase-mcp` console script (`main`) and
`python -m codebase_mcp`; the chunking workers' forkserver imports it first too (Python 3.11's
forkserver ignores the `sys.path` it is handed: server/indexer/prepare.py).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

_HERE = Path(__file__).resolve().parent
# Installed: the folders are beside this file. In a checkout: beside this package's folder.
ROOT = _HERE if (_HERE / "server" / "cli.py").is_file() else _HERE.parent

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: Sequence[str] | None = None) -> int:
    """The `codebase-mcp` command; returns its exit status."""
    from server.cli import main as cli_main

    return cli_main(argv)
