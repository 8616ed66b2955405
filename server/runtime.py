"""How every `codebase-mcp` process starts: stderr stays quiet and nothing goes online.

A stdio server's stdout is the MCP channel and its stderr is shown by MCP clients, so by
default only warnings and errors are logged. FastMCP would otherwise print a banner and, to
draw it, ask PyPI whether a newer release exists; both are switched off here, in code.
"""

from __future__ import annotations

import logging
import os
import sys

from server.settings import Settings

# FastMCP 4.1.6 reads these when `fastmcp` is first imported (fastmcp/settings.py). Its update check
# (FASTMCP_CHECK_FOR_UPDATES) and ONNX Runtime's telemetry are switched off in `server/__init__.py`.
FASTMCP_ENVIRONMENT = {
    "FASTMCP_SHOW_SERVER_BANNER": "false",  # no banner on stderr
    "FASTMCP_LOG_ENABLED": "false",  # no handler of its own: its records go through ours, at our level
}
# Libraries that log every request at INFO: shown from WARNING up whatever LOG_LEVEL says.
CHATTY_LOGGERS = ("alembic", "httpx", "httpx2", "mcp", "fastmcp")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def quiet_libraries() -> None:
    """Switch off FastMCP's banner and own log handler; call before importing fastmcp."""
    for name, value in FASTMCP_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    if "fastmcp" in sys.modules:  # imported already (e.g. in-process tests): set the live settings too
        import fastmcp

        fastmcp.settings.check_for_updates = "off"
        fastmcp.settings.show_server_banner = False


class QuantizerAdviceFilter(logging.Filter):
    """Drops the advice onnxruntime's quantisation tools log on the *root* logger (e.g. "Please consider
    to run pre-processing before quantization") while the fast embedding model is derived on a first
    start: it is meant for model authors, and would be the only line on a new user's stderr."""

    _WHERE = f"{os.sep}onnxruntime{os.sep}quantization{os.sep}"

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.WARNING or self._WHERE not in record.pathname


def setup_logging(settings: Settings) -> None:
    """Logs at LOG_LEVEL (WARNING by default) to LOG_FILE, else stderr; Python warnings included."""
    handler: logging.Handler
    if settings.log_file is not None:
        path = settings.log_file.expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)  # stdout belongs to the MCP stdio transport
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for old_filter in [f for f in root.filters if isinstance(f, QuantizerAdviceFilter)]:
        root.removeFilter(old_filter)
    root.addFilter(QuantizerAdviceFilter())  # a logger filter: only records logged on the root logger itself
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    logging.captureWarnings(True)  # a library's warning goes where the logs go, not always to stderr
