"""Helpers for programs that read vergence's frames or send it commands from another process."""
