"""Input/output: atomic writes, the case file format, OpenKBP (pure numpy)."""
