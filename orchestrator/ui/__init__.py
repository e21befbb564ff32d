"""The operators' dashboard at ``/ui``: checkouts, their status and their steps on a timeline."""

from orchestrator.ui.routes import router

__all__ = ["router"]
