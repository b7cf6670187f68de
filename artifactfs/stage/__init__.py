"""Staging: a writable working copy of an artifact version, kept in a local directory with a journal."""
