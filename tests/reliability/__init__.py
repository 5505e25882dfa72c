"""Helpers for the reliability and security suite (tests/test_reliability_*.py)."""
