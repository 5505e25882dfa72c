"""Shared pytest setup: the project root on sys.path so `tests.world` imports."""
