"""Behaviour logs as knowledge: neighbours from the click graph (ProRBP prompts, later BERM)."""

from relkd.behavior.behavior_neighbors import EVAL_QUERY_POLICIES, BehaviorNeighbors

__all__ = ["EVAL_QUERY_POLICIES", "BehaviorNeighbors"]
