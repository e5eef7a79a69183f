"""EasyRec's learning-rate schedules: its LearningRate message as a function of the step.

Each follows easy_rec/python/builders/optimizer_builder.py `_create_learning_rate` and the
functions it calls (easy_rec/python/core/learning_schedules.py, TF1's polynomial_decay).
The step is TF1's global_step as the optimizer reads it: the number of updates applied
before this one (optax's count), so the first update uses the rate at step 0.

Every schedule has one base rate (BASE_FIELDS). A vmapped sweep gives each replica its own
(a traced scalar): `learning_rate_schedule(message, base)` is the schedule of `message`
with that field set to `base`, so a replica follows its run alone exactly.
"""

import math

import jax.numpy as jnp

from mmoe_jax.config import optimizer_name

# The LearningRate oneof -> the field holding its base rate.
BASE_FIELDS = {
    'constant_learning_rate': 'learning_rate',
    'exponential_decay_learning_rate': 'initial_learning_rate',
    'manual_step_learning_rate': 'initial_learning_rate',
    'cosine_decay_learning_rate': 'learning_rate_base',
    'poly_decay_learning_rate': 'learning_rate_base',
    'transformer_learning_rate': 'learning_rate_base',
}


def schedule_name(learning_rate):
  """The LearningRate oneof that is set, e.g. 'constant_learning_rate'."""
  return next(name for name in BASE_FIELDS if name in learning_rate)


def base_learning_rate(train_config):
  """The configured base rate of train_config's optimizer (its schedule's BASE_FIELDS field)."""
  optimizer = train_config.optimizer_config
  lr = optimizer[optimizer_name(optimizer)].learning_rate
  name = schedule_name(lr)
  return lr[name][BASE_FIELDS[name]]


def learning_rate_schedule(learning_rate, base=None):
  """EasyRec's LearningRate message -> step -> rate (float32, shaped as the step).

  `base` (a float or a traced scalar) replaces the configured base rate, BASE_FIELDS.
  """
  name = schedule_name(learning_rate)
  config = learning_rate[name]
  if base is None:
    base = config[BASE_FIELDS[name]]
  schedule = SCHEDULES[name]
  return lambda step: schedule(config, jnp.asarray(base, jnp.float32), jnp.asarray(step))


def constant(config, base, step):
  del config
  return jnp.full(jnp.shape(step), base, jnp.float32)


def exponential_decay(config, base, step):
  """learning_schedules.exponential_decay_with_burnin: during the first burnin_steps the
  rate is the base rate (burnin_learning_rate 0) or a line from burnin_learning_rate to it;
  then TF1's exponential_decay counted from the end of burn-in; min_learning_rate floors
  both."""
  t = step.astype(jnp.float32)
  exponent = (t - config.burnin_steps) / config.decay_steps
  if config.staircase:
    exponent = jnp.floor(exponent)
  rate = base * jnp.float32(config.decay_factor) ** exponent
  if config.burnin_learning_rate == 0:
    burnin = base
  else:  # validation requires burnin_steps > 0 here (EasyRec divides by it)
    slope = (base - config.burnin_learning_rate) / config.burnin_steps
    burnin = slope * t + config.burnin_learning_rate
  rate = jnp.where(step < config.burnin_steps, burnin, rate)
  return jnp.maximum(rate, config.min_learning_rate)


def manual_step(config, base, step):
  """learning_schedules.manual_stepping: the base rate before schedule[0].step, then each
  schedule entry's rate from its step on; with warmup, a line from the base rate to
  schedule[0].learning_rate over the first schedule[0].step steps."""
  steps = [entry.step for entry in config.schedule]
  rates = jnp.stack([base] + [jnp.float32(entry.learning_rate) for entry in config.schedule])
  index = sum((step >= s).astype(jnp.int32) for s in steps)
  rate = rates[index]
  if config.warmup:
    ramp = base + (rates[1] - base) / steps[0] * step.astype(jnp.float32)
    rate = jnp.where(step < steps[0], ramp, rate)
  return rate


def cosine_decay(config, base, step):
  """learning_schedules.cosine_decay_with_warmup: a line from warmup_learning_rate to the
  base rate over warmup_steps, the base rate for hold_base_rate_steps more, a half cosine
  to 0 at total_steps, and 0 after."""
  t = step.astype(jnp.float32)
  start = config.warmup_steps + config.hold_base_rate_steps
  rate = 0.5 * base * (1 + jnp.cos(math.pi * (t - start) / (config.total_steps - start)))
  if config.hold_base_rate_steps > 0:
    rate = jnp.where(step > start, rate, base)
  if config.warmup_steps > 0:
    slope = (base - config.warmup_learning_rate) / config.warmup_steps
    rate = jnp.where(step < config.warmup_steps, slope * t + config.warmup_learning_rate, rate)
  return jnp.where(step > config.total_steps, 0.0, rate).astype(jnp.float32)


def poly_decay(config, base, step):
  """TF1's polynomial_decay (cycle=False): from the base rate to end_learning_rate at
  total_steps along (1 - step / total_steps)^power, then end_learning_rate."""
  t = jnp.minimum(step.astype(jnp.float32), config.total_steps)
  fraction = 1 - t / config.total_steps
  end = config.end_learning_rate
  return (base - end) * fraction ** jnp.float32(config.power) + end


def transformer(config, base, step):
  """learning_schedules.transformer_policy as EasyRec calls it (coefficient 1, no max_lr):
  base * hidden_size^-0.5 * min((s + 1) * w^-1.5, (s + 1)^-0.5), with s the step and w
  warmup_steps, both times step_scaling_rate."""
  s = step.astype(jnp.float32) * config.step_scaling_rate
  # w 0 gives w^-1.5 = inf, so the min is its second term, as in EasyRec.
  w = jnp.float32(config.warmup_steps * config.step_scaling_rate)
  decay = config.hidden_size ** -0.5 * jnp.minimum((s + 1) * w ** -1.5, (s + 1) ** -0.5)
  return base * decay


SCHEDULES = {
    'constant_learning_rate': constant,
    'exponential_decay_learning_rate': exponential_decay,
    'manual_step_learning_rate': manual_step,
    'cosine_decay_learning_rate': cosine_decay,
    'poly_decay_learning_rate': poly_decay,
    'transformer_learning_rate': transformer,
}
