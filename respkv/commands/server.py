"""server commands (being written)."""
