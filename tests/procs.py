"""Helpers for tests that kill a real server process while clients write to it (the same
helper ``notefeed bench durability`` uses)."""

from __future__ import annotations

from notefeed.serve.durability import kill9_while_writing

__all__ = ["kill9_while_writing"]
