"""Every experiment of ``wiseale reproduce``: its name, the module of its spec and its
one-line summary, in the order ``wiseale experiments`` lists them; read without importing the
experiments (or torch). A spec takes its summary from here, and ``wiseale.experiments``
builds ``EXPERIMENTS`` from the modules named here."""

from __future__ import annotations

from typing import NamedTuple

from wiseale.registry import Registry

# quick: minutes on a CPU (a smoke test of the claims); medium: where the claims' regimes are
# reached on 2 CPU cores in about 30 minutes a seed; full: the papers' settings.
SCALES = ("quick", "medium", "full")
LAUNCHERS = ("local", "submitit", "ray")  # experiments.launchers



class Listing(NamedTuple):
    """An experiment as ``wiseale experiments`` lists it: its spec lives in
    ``wiseale.experiments.<module>``."""

    name: str
    module: str
    summary: str


INDEX: Registry[Listing] = Registry("experiment")
for _listing in (
        Listing("sine", "paper001", "001 Fig. 5a/6: WiSE-ALE vs AEVB, beta-VAE, WAE on sine "
              "waves"),
        Listing("mnist-embedding", "paper001", "001 Fig. 1: 2-D embeddings by AEVB, beta-VAE, "
              "WiSE-ALE, WAE (--data mnist|fashion-mnist|digits)"),
        Listing("celeba", "paper001", "001 Fig. 5b: CelebA reconstructions of AEVB, WAE, "
              "WiSE-ALE (needs CelebA: --data-dir)"),
        Listing("prior-constraint", "prior_constraint", "001 Fig. 4: AEVB vs WiSE-ALE prior "
              "constraint on two 1-D posteriors as the variance changes"),
        Listing("vcae-mog", "paper003", "003 Fig. 2a-c: VCAE vs cWAE MSE and latents on the "
              "mixture-of-Gaussians toy"),
        Listing("vcae-overfit", "paper003", "003 Table 1: train/test errors on ReducedMNIST with "
              "and without encoder noise"),
        Listing("vcae-table2", "paper003", "003 Table 2 (MNIST) and Tables 6-7: L2 errors, FID "
              "from the prior and from a flow, lambda sweeps at d_z = 16"),
        Listing("vcae-mnist2d", "paper003", "003 Fig. 2d-e, 5, 8: VCAE vs cWAE with a 2-D latent "
              "on MNIST (errors, codes, histograms, flow)"),
        Listing("vcae-shapes", "paper003", "003 Table 3/Fig. 4: TC-VCAE vs TC-cWAE vs FactorVAE "
              "disentanglement (--data toy-shapes|3dshapes|dsprites)"),
        Listing("lv-sweep", "paper004", "004 Fig. 1: test ELBO, FID (prior, mixture) and "
              "KL(q_hat || p) against a fixed or learned likelihood variance, d_z = 16"),
        Listing("lv-latent2d", "paper004", "004 Table 1, Supp. C: aggregate-posterior and "
              "mixture log densities and KL(q_hat || p) for fixed and learned variances, d_z = 2"),
        Listing("lv-fid", "paper004", "004 Table 2: FID of the learned-variance VAE, VAE, "
              "beta-VAE, DIP-VAE and WAE from the prior and from a mixture of the aggregate "
              "posterior"),
        Listing("lv-components", "paper004", "004 Table 4: FID of lv-vae samples against the "
              "number of components of the aggregate posterior's mixture"),
        Listing("lv-iwae", "paper004", "004 Table 3 and Fig. 3-4: IWAE test log-likelihood with "
              "the prior and with the mixture, and the pixel-wise model's predicted variance")):
    INDEX.register(_listing)
