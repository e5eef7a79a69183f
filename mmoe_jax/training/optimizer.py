"""optax optimizers and learning-rate schedules from EasyRec's train_config."""

import jax.numpy as jnp
import optax


def base_learning_rate(train_config):
  """The configured rate: constant_learning_rate.learning_rate or initial_learning_rate."""
  lr = train_config.optimizer_config.adam_optimizer.learning_rate
  if 'constant_learning_rate' in lr:
    return lr.constant_learning_rate.learning_rate
  return lr.exponential_decay_learning_rate.initial_learning_rate


def learning_rate_schedule(learning_rate, base=None):
  """EasyRec's LearningRate message -> an optax schedule (step -> rate).

  `base` (a float or a traced scalar, e.g. one per replica of a sweep) replaces the
  configured constant or initial rate; the decay keeps its configured shape.
  """
  if 'constant_learning_rate' in learning_rate:
    rate = learning_rate.constant_learning_rate.learning_rate if base is None else base
    return lambda step: jnp.full(jnp.shape(step), rate, jnp.float32)
  cfg = learning_rate.exponential_decay_learning_rate
  initial = cfg.initial_learning_rate if base is None else base

  def schedule(step):
    # EasyRec's exponential_decay_with_burnin: a linear burn-in from
    # burnin_learning_rate, then initial * decay_factor^(step / decay_steps),
    # floored (staircase) and clipped below at min_learning_rate.
    exponent = step / cfg.decay_steps
    if cfg.staircase:
      exponent = jnp.floor(exponent)
    rate = jnp.maximum(initial * cfg.decay_factor ** exponent, cfg.min_learning_rate)
    if cfg.burnin_steps > 0:
      frac = jnp.minimum(step / cfg.burnin_steps, 1.0)
      burnin = cfg.burnin_learning_rate + (initial - cfg.burnin_learning_rate) * frac
      rate = jnp.where(step < cfg.burnin_steps, burnin, rate)
    return rate

  return schedule


def make_optimizer(train_config, learning_rate=None):
  """Returns (optax transformation, schedule); `learning_rate` as `base` above."""
  adam = train_config.optimizer_config.adam_optimizer
  schedule = learning_rate_schedule(adam.learning_rate, learning_rate)
  # TF1's AdamOptimizer epsilon is 1e-8, as optax's default.
  tx = optax.adam(schedule, b1=adam.beta1, b2=adam.beta2, eps=1e-8)
  if train_config.gradient_clipping_by_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(train_config.gradient_clipping_by_norm), tx)
  return tx, schedule
