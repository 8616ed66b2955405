"""codebase-mcp: semantic code search over PostgreSQL + pgvector, served over MCP."""

import os as _os

__version__ = "0.1.0"

# The product works offline and never goes online by itself. Set here, in the first module of
# every entry point (CLI, workers, chunking processes, tests, library use), so it holds before
# either library initialises:
# - ONNX Runtime's official builds upload usage telemetry (1DS over HTTPS) unless this is set
#   before it initialises (onnxruntime/Privacy.md, "Disabling Telemetry");
# - FastMCP asks PyPI for a newer release when it draws its banner (fastmcp/settings.py).
_os.environ["ORT_DISABLE_TELEMETRY"] = "1"
_os.environ["FASTMCP_CHECK_FOR_UPDATES"] = "off"
