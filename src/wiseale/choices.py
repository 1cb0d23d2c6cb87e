"""The values that the parts' arguments choose among, as the ``typing.Literal`` types their
constructors are annotated with (wiseale.schema checks them); in a module that loads no torch.
"""

from typing import Literal, get_args

AggregateScaling = Literal["batch", "per-sample"]  # regularizers.AggregateKL: docs/objective.md
MMDKernel = Literal["imq", "rbf"]  # regularizers.PriorMMD
MMDScales = Literal["single", "multi"]  # functional.MMD_SCALE_SETS
DIPVariant = Literal["i", "ii"]  # DIP-VAE-I and -II (Kumar et al. 2018)
Stage1Variance = Literal["gradient", "closed-form"]  # likelihoods.PixelGaussian, 004 Alg. 1
Reconstruction = Literal["sample", "exact", "mixture"]  # model.Autoencoder: docs/objective.md

MMD_SCALE_NAMES = get_args(MMDScales)
DIP_VARIANTS = get_args(DIPVariant)
RECONSTRUCTIONS = get_args(Reconstruction)
# lambda_d / lambda_od of each DIP-VAE variant when lambda_d is not given (Kumar et al. 2018)
DIP_LAMBDA_D_FACTOR = {"i": 10.0, "ii": 1.0}
