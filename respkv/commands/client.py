"""client commands (being written)."""
