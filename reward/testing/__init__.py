"""Test helpers that ship with the package (an OpenAI-compatible server)."""
