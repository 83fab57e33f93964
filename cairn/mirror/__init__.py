"""Postgres mirror (issue #5): not built yet."""
