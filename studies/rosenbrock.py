"""A user objective: gradient descent on the Rosenbrock function.

It shows what hpo asks of an objective: read the sampled values from `trial.params`, report
the cost as it goes (hpo stops the trial the moment that cost exceeds 3x its first value), and
return the number to minimize. Learning rates near the top of the range make it explode.
"""

from __future__ import annotations

import optuna

REPORT_EVERY = 25


def rosenbrock(x: float, y: float) -> float:
    a, b = 1.0 - x, y - x * x
    return a * a + 100.0 * b * b


def gradient(x: float, y: float) -> tuple[float, float]:
    b = y - x * x
    return -2.0 * (1.0 - x) - 400.0 * x * b, 200.0 * b


def objective(trial: optuna.Trial) -> float:
    lr = trial.params["lr"]
    momentum = trial.params.get("momentum", 0.0)
    x, y, vx, vy = -1.2, 1.0, 0.0, 0.0
    cost = rosenbrock(x, y)
    for step in range(trial.params["steps"]):
        cost = rosenbrock(x, y)
        if step % REPORT_EVERY == 0:
            trial.report(cost, step)
            if trial.should_prune():  # the median pruner reads the study: not every step
                raise optuna.TrialPruned()
        gx, gy = gradient(x, y)
        vx, vy = momentum * vx - lr * gx, momentum * vy - lr * gy
        x, y = x + vx, y + vy
    return cost
