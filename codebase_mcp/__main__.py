"""`python -m codebase_mcp ...`: the `codebase-mcp` command."""

import sys

from codebase_mcp import main

sys.exit(main())
