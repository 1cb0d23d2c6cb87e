"""Evaluation metrics, shared by `wiseale evaluate` and every experiment."""

from wiseale.metrics.disentanglement import factorvae_score
from wiseale.metrics.evaluation import evaluate, evaluate_full, prior_fid
from wiseale.metrics.fid import (
    ClassifierFeatures,
    FeatureExtractor,
    InceptionFeatures,
    classifier_features,
    feature_extractor,
    feature_statistics,
    fid,
    frechet_distance,
    image_fid,
    inception_features,
)

__all__ = ["ClassifierFeatures", "FeatureExtractor", "InceptionFeatures", "classifier_features",
           "evaluate", "evaluate_full", "factorvae_score", "feature_extractor",
           "feature_statistics", "fid", "frechet_distance", "image_fid", "inception_features",
           "prior_fid"]
