"""Synthetic regression tasks of controlled correlation (the MMoE paper, section 3.2).

For a correlation p in [-1, 1]: orthogonal unit vectors u1, u2 in R^d, task weights
w1 = c u1 and w2 = c (p u1 + sqrt(1 - p^2) u2), so cos(w1, w2) = p; inputs x ~ N(0, I_d);
labels y_k = w_k.x + sum_{i=1..m} sin(alpha_i w_k.x + beta_i) + noise.

The paper leaves c, m, alpha, beta and the noise level open (paper.md, section 1.2). Here:
c = scale (1.0), m = num_sines (10), alpha_i, beta_i ~ N(0, 1) drawn once from sines_seed and
shared by both tasks and by every replica (so replicas differ only in u1, u2, x and noise, as
the paper's "independent data generation" asks), and noise ~ N(0, 0.01) read as a variance:
noise_std = 0.1. With these, the sines add a smooth non-linearity of about the linear part's
size (alpha near 1), which small experts can learn; alpha up to 10, as in one public
generator, makes the labels mostly high-frequency and every model's loss about the same.

The data of a given seed is the same for every correlation except w2 (u1, u2, x and noise are
drawn from the same keys), so results across correlations are paired.
"""

import numpy as np

INPUT = 'x'  # the input field / RawFeature holding x as `input_dim` values
LABELS = ('y1', 'y2')


def sines(num_sines, sines_seed):
  """(alpha, beta), each [m], shared by both tasks."""
  rng = np.random.default_rng((sines_seed, 1))
  return rng.standard_normal(num_sines), rng.standard_normal(num_sines)


def generate(num_rows, *, correlation, seed, input_dim=100, scale=1.0, num_sines=10,
             noise_std=0.1, sines_seed=0):
  """Returns (x float32 [N, d], {'y1': float32 [N], 'y2': float32 [N]})."""
  if not -1 <= correlation <= 1:
    raise ValueError(f'correlation must be in [-1, 1], got {correlation}')
  rng = np.random.default_rng((seed, 0))
  # Orthonormal u1, u2: QR of a Gaussian d x 2 matrix.
  q, _ = np.linalg.qr(rng.standard_normal((input_dim, 2)))
  u1, u2 = q[:, 0], q[:, 1]
  w1 = scale * u1
  w2 = scale * (correlation * u1 + np.sqrt(1 - correlation ** 2) * u2)
  x = rng.standard_normal((num_rows, input_dim))
  noise = noise_std * rng.standard_normal((2, num_rows))
  alpha, beta = sines(num_sines, sines_seed)
  labels = {}
  for name, w, eps in zip(LABELS, (w1, w2), noise):
    z = x @ w
    labels[name] = (z + np.sin(np.outer(z, alpha) + beta).sum(axis=1) + eps).astype(np.float32)
  return x.astype(np.float32), labels
