"""The names that the parts' options choose among, in one place that loads no torch: method
presets (methods.py) and the command line check options against them before torch starts."""

AGGREGATE_SCALINGS = ("batch", "per-sample")  # regularizers.AggregateKL: docs/objective.md
MMD_KERNELS = ("imq", "rbf")  # regularizers.PriorMMD
MMD_SCALE_NAMES = ("single", "multi")  # functional.MMD_SCALE_SETS
DIP_VARIANTS = ("i", "ii")  # DIP-VAE-I and -II (Kumar et al. 2018)
# lambda_d / lambda_od of each DIP-VAE variant when lambda_d is not given (Kumar et al. 2018)
DIP_LAMBDA_D_FACTOR = {"i": 10.0, "ii": 1.0}
STAGE1_VARIANCES = ("gradient", "closed-form")  # likelihoods.PixelGaussian, 004 Alg. 1
RECONSTRUCTIONS = ("sample", "exact", "mixture")  # model.Autoencoder: docs/objective.md
