"""Learning-rate schedules against EasyRec's definitions.

The references below are written from easy_rec/python/core/learning_schedules.py and TF1's
exponential_decay / polynomial_decay, in plain Python, one step at a time.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmoe_jax.config import complete, schema
from mmoe_jax.training import schedules
from mmoe_jax.training.schedules import learning_rate_schedule

STEPS = (0, 1, 5, 9, 10, 11, 49, 50, 51, 99, 100, 101, 150, 400, 1000)


def lr_config(name, **fields):
  return complete({name: fields}, schema.LEARNING_RATE)


def assert_schedule(learning_rate, reference, steps=STEPS, rtol=1e-5):
  schedule = learning_rate_schedule(learning_rate)
  for step in steps:
    np.testing.assert_allclose(schedule(step), reference(step), rtol=rtol, atol=1e-9,
                               err_msg=f'step {step}')
  # A vector of steps (a scan's) gives each its own rate.
  np.testing.assert_allclose(schedule(jnp.array(steps)), [reference(s) for s in steps],
                             rtol=rtol, atol=1e-9)


def exponential_with_burnin(step, base, decay_steps, decay_factor, staircase=True,
                            burnin_learning_rate=0.0, burnin_steps=0, min_learning_rate=0.0):
  """learning_schedules.exponential_decay_with_burnin."""
  if burnin_learning_rate == 0:
    burnin = base
  else:
    burnin = (base - burnin_learning_rate) / burnin_steps * step + burnin_learning_rate
  p = (step - burnin_steps) / decay_steps
  if staircase:
    p = math.floor(p)
  post = base * decay_factor ** p
  return max(burnin if step < burnin_steps else post, min_learning_rate)


def test_burnin_holds_the_base_rate_and_decay_counts_from_its_end():
  """EasyRec with burnin_learning_rate 0 (the default): the base rate during burn-in (no
  ramp from 0), then the decay from step - burnin_steps."""
  schedule = learning_rate_schedule(lr_config(
      'exponential_decay_learning_rate', initial_learning_rate=0.1, decay_steps=50,
      decay_factor=0.5, burnin_steps=100))
  for step, expected in [(0, 0.1), (50, 0.1), (99, 0.1), (100, 0.1), (149, 0.1), (150, 0.05),
                         (200, 0.025), (260, 0.0125)]:
    np.testing.assert_allclose(schedule(step), expected, rtol=1e-6, err_msg=f'step {step}')


def test_min_learning_rate_floors_every_phase():
  schedule = learning_rate_schedule(lr_config(
      'exponential_decay_learning_rate', initial_learning_rate=0.1, decay_steps=10,
      decay_factor=0.5, burnin_learning_rate=0.01, burnin_steps=10, min_learning_rate=0.04))
  # The burn-in line 0.01 + 0.009 * step is below the floor for its first steps.
  np.testing.assert_allclose(schedule(0), 0.04, rtol=1e-6)
  np.testing.assert_allclose(schedule(5), 0.055, rtol=1e-6)
  np.testing.assert_allclose(schedule(10), 0.1, rtol=1e-6)
  np.testing.assert_allclose(schedule(20), 0.05, rtol=1e-6)
  np.testing.assert_allclose(schedule(30), 0.04, rtol=1e-6)  # 0.025 floored


@pytest.mark.parametrize('fields', [
    dict(initial_learning_rate=0.001, decay_steps=1000, decay_factor=0.5, min_learning_rate=1e-4),
    dict(initial_learning_rate=0.01, decay_steps=100, decay_factor=0.5, staircase=False,
         burnin_learning_rate=0.001, burnin_steps=10),
    dict(initial_learning_rate=0.01, decay_steps=30, decay_factor=0.9, staircase=True,
         burnin_learning_rate=0.02, burnin_steps=50, min_learning_rate=0.005),
    dict(initial_learning_rate=0.01, decay_steps=7, decay_factor=0.8, staircase=False,
         burnin_steps=50),
], ids=['staircase_floor', 'smooth_ramp', 'ramp_down_floor', 'smooth_hold'])
def test_exponential_decay_follows_easyrec(fields):
  fields = dict(complete({}, schema.EXPONENTIAL_DECAY_LR).to_dict(), **fields)
  base = fields.pop('initial_learning_rate')
  assert_schedule(lr_config('exponential_decay_learning_rate', initial_learning_rate=base,
                            **fields),
                  lambda s: exponential_with_burnin(s, base, **fields))


def test_exponential_decay_without_burnin():
  schedule = learning_rate_schedule(lr_config(
      'exponential_decay_learning_rate', initial_learning_rate=0.001, decay_steps=1000,
      decay_factor=0.5, min_learning_rate=1e-4))
  for step, expected in [(0, 1e-3), (999, 1e-3), (1000, 5e-4), (2500, 2.5e-4), (10000, 1e-4)]:
    np.testing.assert_allclose(schedule(step), expected, rtol=1e-6)


def test_constant_learning_rate():
  assert_schedule(lr_config('constant_learning_rate', learning_rate=0.3), lambda s: 0.3)
  assert_schedule(lr_config('constant_learning_rate'), lambda s: 0.002)  # EasyRec's default


def manual_stepping(step, initial, schedule, warmup):
  """learning_schedules.manual_stepping as optimizer_builder.py calls it."""
  boundaries = [b for b, _ in schedule]
  rates = [initial] + [r for _, r in schedule]
  if warmup:
    slope = (rates[1] - rates[0]) / boundaries[0]
    boundaries = list(range(boundaries[0])) + boundaries
    rates = [rates[0] + slope * s for s in range(len(boundaries) - len(schedule))] + rates[1:]
  else:
    boundaries = [0] + boundaries
  index = max(i for i, b in enumerate(boundaries) if step >= b)
  return rates[index]


@pytest.mark.parametrize('warmup', [False, True])
def test_manual_step(warmup):
  entries = [(10, 0.05), (50, 0.01), (100, 0.001)]
  config = lr_config('manual_step_learning_rate', initial_learning_rate=0.1, warmup=warmup,
                     schedule=[dict(step=s, learning_rate=r) for s, r in entries])
  assert_schedule(config, lambda s: manual_stepping(s, 0.1, entries, warmup),
                  steps=STEPS + tuple(range(12)))
  schedule = learning_rate_schedule(config)
  np.testing.assert_allclose(schedule(9), 0.1 - 0.005 * 9 if warmup else 0.1, rtol=1e-6)
  np.testing.assert_allclose(schedule(10), 0.05, rtol=1e-6)
  np.testing.assert_allclose(schedule(99), 0.01, rtol=1e-6)
  np.testing.assert_allclose(schedule(100), 0.001, rtol=1e-6)


def cosine_decay_with_warmup(step, base, total_steps, warmup_learning_rate, warmup_steps,
                             hold_base_rate_steps):
  """learning_schedules.cosine_decay_with_warmup, one step."""
  if step > total_steps:
    return 0.0
  if warmup_steps > 0 and step < warmup_steps:
    return (base - warmup_learning_rate) / warmup_steps * step + warmup_learning_rate
  if hold_base_rate_steps > 0 and step <= warmup_steps + hold_base_rate_steps:
    return base
  start = warmup_steps + hold_base_rate_steps
  return 0.5 * base * (1 + math.cos(math.pi * (step - start) / (total_steps - start)))


@pytest.mark.parametrize('fields', [
    dict(total_steps=400, warmup_learning_rate=0.01, warmup_steps=10, hold_base_rate_steps=40),
    dict(total_steps=400, warmup_learning_rate=0.0, warmup_steps=0, hold_base_rate_steps=0),
    dict(total_steps=120, warmup_learning_rate=0.02, warmup_steps=50, hold_base_rate_steps=0),
])
def test_cosine_decay(fields):
  assert_schedule(lr_config('cosine_decay_learning_rate', learning_rate_base=0.1, **fields),
                  lambda s: cosine_decay_with_warmup(s, 0.1, **fields), rtol=2e-5)


def test_cosine_decay_defaults_are_easyrecs():
  c = lr_config('cosine_decay_learning_rate').cosine_decay_learning_rate
  schedule = learning_rate_schedule(lr_config('cosine_decay_learning_rate'))
  assert (c.learning_rate_base, c.total_steps, c.warmup_learning_rate, c.warmup_steps,
          c.hold_base_rate_steps) == (0.002, 4000000, 0.0002, 10000, 0)
  np.testing.assert_allclose(schedule(0), 0.0002, rtol=1e-6)
  np.testing.assert_allclose(schedule(5000), 0.0002 + 0.0018 / 2, rtol=1e-6)
  np.testing.assert_allclose(schedule(10000), 0.002, rtol=1e-6)


@pytest.mark.parametrize('power,end', [(1.0, 0.0), (2.0, 0.001), (0.5, 0.01)])
def test_poly_decay(power, end):
  def polynomial_decay(step):  # TF1's polynomial_decay, cycle=False
    step = min(step, 100)
    return (0.1 - end) * (1 - step / 100) ** power + end

  assert_schedule(lr_config('poly_decay_learning_rate', learning_rate_base=0.1, total_steps=100,
                            power=power, end_learning_rate=end), polynomial_decay)


@pytest.mark.parametrize('warmup_steps,scaling', [(50, 1.0), (20, 0.5), (0, 1.0)])
def test_transformer(warmup_steps, scaling):
  def transformer_policy(step):  # coefficient 1, no max_lr, as EasyRec calls it
    s, w = step * scaling, warmup_steps * scaling
    warm = (s + 1) * w ** -1.5 if w else math.inf
    return 2.0 * 64 ** -0.5 * min(warm, (s + 1) ** -0.5)

  assert_schedule(lr_config('transformer_learning_rate', learning_rate_base=2.0, hidden_size=64,
                            warmup_steps=warmup_steps, step_scaling_rate=scaling),
                  transformer_policy)


EVERY_SCHEDULE = {
    'constant_learning_rate': {},
    'exponential_decay_learning_rate': dict(decay_steps=20, decay_factor=0.7, burnin_steps=10,
                                            burnin_learning_rate=0.001),
    'manual_step_learning_rate': dict(schedule=[dict(step=10, learning_rate=0.5)], warmup=True),
    'cosine_decay_learning_rate': dict(total_steps=100, warmup_steps=10,
                                       warmup_learning_rate=0.001),
    'poly_decay_learning_rate': dict(learning_rate_base=0.1, total_steps=100, power=2.0),
    'transformer_learning_rate': dict(learning_rate_base=0.1, hidden_size=16, warmup_steps=10),
}


@pytest.mark.parametrize('name', list(EVERY_SCHEDULE))
def test_base_replaces_the_base_field_also_traced(name):
  """A sweep replica's base rate (traced under vmap) gives the schedule of its config."""
  field = schedules.BASE_FIELDS[name]
  steps = jnp.array([0, 5, 10, 15, 50, 99, 150])
  bases = [0.01, 0.2]
  expected = [learning_rate_schedule(lr_config(name, **{**EVERY_SCHEDULE[name], field: b}))(
      steps) for b in bases]
  configured = lr_config(name, **EVERY_SCHEDULE[name])
  for base, want in zip(bases, expected):
    np.testing.assert_allclose(learning_rate_schedule(configured, base)(steps), want, rtol=1e-6)
  traced = jax.vmap(lambda b: learning_rate_schedule(configured, b)(steps))(jnp.array(bases))
  np.testing.assert_allclose(traced, np.stack(expected), rtol=1e-6)
  assert not np.allclose(expected[0], expected[1])  # the base rate matters


@pytest.mark.parametrize('name', list(EVERY_SCHEDULE))
def test_base_learning_rate_reads_the_base_field(name):
  lr = {name: {**EVERY_SCHEDULE[name], schedules.BASE_FIELDS[name]: 0.123}}
  train = complete({'optimizer_config': {'momentum_optimizer': {'learning_rate': lr}}},
                   schema.TRAIN_CONFIG)
  assert schedules.base_learning_rate(train) == 0.123


def test_base_fields_cover_the_schema():
  assert set(schedules.BASE_FIELDS) == set(schema.LEARNING_RATE.oneof) == set(
      schedules.SCHEDULES)
