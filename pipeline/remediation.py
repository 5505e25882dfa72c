"""Transitional: the remediation lines now live in `pipeline.causes` (one record per cause).

Only `pipeline/commands/explain.py` still imports from here; delete this module once it
imports `REMEDIATION` and `ATTACK_ADVICE` from `pipeline.causes`.
"""

from __future__ import annotations

from pipeline.causes import ATTACK_ADVICE, REMEDIATION, remediation

__all__ = ["ATTACK_ADVICE", "REMEDIATION", "remediation"]
