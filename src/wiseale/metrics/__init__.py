"""Evaluation metrics, shared by `wiseale evaluate` and every experiment."""

from wiseale.metrics.disentanglement import factorvae_score
from wiseale.metrics.evaluation import evaluate, evaluate_full, sample_features, sample_fid
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
from wiseale.metrics.jacobian import decoder_jacobian_sq_norm, proposition1

__all__ = ["ClassifierFeatures", "FeatureExtractor", "InceptionFeatures", "classifier_features",
           "decoder_jacobian_sq_norm", "evaluate", "evaluate_full", "factorvae_score",
           "feature_extractor", "feature_statistics", "fid", "frechet_distance", "image_fid",
           "inception_features", "proposition1", "sample_features",
           "sample_fid"]
