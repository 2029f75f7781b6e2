"""Planning: model-free search over action sequences (:mod:`.planners`) for model-predictive control."""

from .planners import PLANNERS, CostFn, PlanResult, cem, gradient, mppi, search_held, shift_plan

__all__ = ["PLANNERS", "CostFn", "PlanResult", "cem", "gradient", "mppi", "search_held", "shift_plan"]
