"""Repository and project lifecycle: list, overlap rules, removal."""
