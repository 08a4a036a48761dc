"""atp: AI-driven automated radiotherapy treatment planning."""

__version__ = "0.1.0"
