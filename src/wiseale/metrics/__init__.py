"""Evaluation metrics, shared by `wiseale evaluate` and every experiment."""

from wiseale.metrics.evaluation import evaluate, evaluate_full

__all__ = ["evaluate", "evaluate_full"]
