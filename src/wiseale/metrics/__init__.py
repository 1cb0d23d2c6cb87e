"""Evaluation metrics, shared by `wiseale evaluate` and every experiment."""

from wiseale.metrics.evaluation import evaluate

__all__ = ["evaluate"]
