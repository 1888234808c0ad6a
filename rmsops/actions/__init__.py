"""Guarded changes: every action is a dry run unless confirmed, and every call is audited."""

from rmsops.actions.base import ACTIONS, ActionPlan, ActionRecord, execute, plan

__all__ = ["ACTIONS", "ActionPlan", "ActionRecord", "execute", "plan"]

from rmsops.actions import cloudfront, ecs, rds  # noqa: E402,F401  (registers the actions)
