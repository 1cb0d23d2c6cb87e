"""Every experiment of ``wiseale reproduce`` by name, with its one-line summary, in the order
``wiseale experiments`` lists them: read without importing the experiments (or torch); each
spec takes its summary from here."""

# quick: minutes on a CPU (a smoke test of the claims); medium: where the claims' regimes are
# reached on 2 CPU cores in about 30 minutes a seed; full: the papers' settings.
SCALES = ("quick", "medium", "full")

SUMMARIES = {
    "sine": "001 Fig. 5a/6: WiSE-ALE vs AEVB, beta-VAE, WAE on sine waves",
    "mnist-embedding": (
        "001 Fig. 1: 2-D embeddings by AEVB, beta-VAE, WiSE-ALE, WAE (--data "
        "mnist|fashion-mnist|digits)"),
    "celeba": (
        "001 Fig. 5b: CelebA reconstructions of AEVB, WAE, WiSE-ALE (needs CelebA: --data-dir)"),
    "prior-constraint": (
        "001 Fig. 4: AEVB vs WiSE-ALE prior constraint on two 1-D posteriors as the variance "
        "changes"),
    "vcae-mog": "003 Fig. 2a-c: VCAE vs cWAE MSE and latents on the mixture-of-Gaussians toy",
    "vcae-overfit": "003 Table 1: train/test errors on ReducedMNIST with and without encoder noise",
    "vcae-table2": (
        "003 Table 2 (MNIST) and Tables 6-7: L2 errors, FID from the prior and from a flow, "
        "lambda sweeps at d_z = 16"),
    "vcae-mnist2d": (
        "003 Fig. 2d-e, 5, 8: VCAE vs cWAE with a 2-D latent on MNIST (errors, codes, histograms,"
        " flow)"),
    "vcae-shapes": (
        "003 Table 3/Fig. 4: TC-VCAE vs TC-cWAE vs FactorVAE disentanglement (--data "
        "toy-shapes|3dshapes|dsprites)"),
    "lv-sweep": (
        "004 Fig. 1: test ELBO, FID (prior, mixture) and KL(q_hat || p) against a fixed or "
        "learned likelihood variance, d_z = 16"),
    "lv-latent2d": (
        "004 Table 1, Supp. C: aggregate-posterior and mixture log densities and KL(q_hat || p) "
        "for fixed and learned variances, d_z = 2"),
    "lv-fid": (
        "004 Table 2: FID of the learned-variance VAE, VAE, beta-VAE, DIP-VAE and WAE from the "
        "prior and from a mixture of the aggregate posterior"),
    "lv-components": (
        "004 Table 4: FID of lv-vae samples against the number of components of the aggregate "
        "posterior's mixture"),
    "lv-iwae": (
        "004 Table 3 and Fig. 3-4: IWAE test log-likelihood with the prior and with the mixture, "
        "and the pixel-wise model's predicted variance"),
}
