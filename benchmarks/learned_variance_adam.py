"""How fast Adam moves the learned likelihood variance of 004 Eq. 9 under two parametrisations
(log sigma^2, and sigma as 004 Alg. 1 has it): sigma^2 after 234 (a quick lv run), 585 (a
medium one), 3,744 (004's stage 1 at full scale) and 7,020 steps at lr 5e-4, D = 784, optimum
sigma^2 = 0.035.
Recorded in docs/deviations.md. Run: python benchmarks/learned_variance_adam.py"""

import torch

D, OPTIMUM, LR, STEPS = 784, 0.035, 5e-4, (234, 585, 3_744, 7_020)


def variance(p: torch.Tensor, parameter: str) -> torch.Tensor:
    return p.exp() if parameter == "log sigma^2" else p.square()


def trajectory(parameter: str) -> dict[int, float]:
    """sigma^2 after each of STEPS Adam steps on Eq. 9's loss at a fixed squared error."""
    start = 0.0 if parameter == "log sigma^2" else 1.0
    p = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    optimizer = torch.optim.Adam([p], lr=LR)
    found = {}
    for step in range(1, max(STEPS) + 1):
        optimizer.zero_grad()
        sigma2 = variance(p, parameter)
        (0.5 * D * (sigma2.log() + OPTIMUM / sigma2)).backward()
        optimizer.step()
        if step in STEPS:
            found[step] = variance(p, parameter).item()
    return found


if __name__ == "__main__":
    for parameter in ("log sigma^2", "sigma"):
        print(parameter, {k: round(v, 4) for k, v in trajectory(parameter).items()})
