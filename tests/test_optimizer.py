"""EasyRec's optimizers against numpy references of the TF1 update rules it builds.

Each reference is written from TF1's documented update (tf.train.*Optimizer and the
training ops they call) and EasyRec's optimizer_builder.py / compat/weight_decay_optimizers.py,
one step at a time, never from this code's output. The learning rate changes at step 2 so
that where each optimizer applies it (inside or outside its accumulators) matters.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mmoe
from mmoe_jax.config import ConfigError, complete, schema, validate
from mmoe_jax.training import optimizer as optimizer_lib

# The rate is 0.1 for steps 0-1, then 0.03.
LR = {'manual_step_learning_rate': {'initial_learning_rate': 0.1,
                                    'schedule': [{'step': 2, 'learning_rate': 0.03}]}}
NUM_STEPS = 5


def rate(step):
  return 0.1 if step < 2 else 0.03


def train_config(name, **fields):
  return complete({'optimizer_config': {name: dict(learning_rate=LR, **fields)}},
                  schema.TRAIN_CONFIG)


def problem():
  """Initial params and one gradient per step (fixed numbers: the rules, not a loss, are
  under test)."""
  rng = np.random.default_rng(0)
  params = {'a': rng.normal(size=3), 'b': {'kernel': rng.normal(size=(2, 2))}}
  grads = [jax.tree.map(lambda p: rng.normal(size=p.shape) * 0.5, params)
           for _ in range(NUM_STEPS)]
  return params, grads


def run_optax(config):
  params, grads = problem()
  tx, _ = optimizer_lib.make_optimizer(config)
  params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params)
  state = tx.init(params)
  for g in grads:
    updates, state = tx.update(jax.tree.map(jnp.float32, g), state, params)
    params = optax.apply_updates(params, updates)
  return params


def run_reference(step_fn, init_slots):
  """step_fn(w, g, lr, t, slots) -> (w, slots) per array, t = 1, 2, ...; slots per array."""
  params, grads = problem()
  leaves, treedef = jax.tree.flatten(params)
  slots = [init_slots(w) for w in leaves]
  for t, g in enumerate(grads):
    out = [step_fn(w, gi, rate(t), t + 1, s)
           for w, gi, s in zip(leaves, jax.tree.leaves(g), slots)]
    leaves, slots = [w for w, _ in out], [s for _, s in out]
  return jax.tree.unflatten(treedef, leaves)


def tf1_adam(b1, b2, eps=1e-8, weight_decay=0.0):
  """tf.train.AdamOptimizer; with weight_decay, EasyRec's AdamWOptimizer, which first does
  var -= weight_decay * var (no learning rate in it)."""
  def step(w, g, lr, t, s):
    w = w - weight_decay * w
    m = b1 * s['m'] + (1 - b1) * g
    v = b2 * s['v'] + (1 - b2) * g * g
    lr_t = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    return w - lr_t * m / (np.sqrt(v) + eps), dict(m=m, v=v)
  return step, lambda w: dict(m=np.zeros_like(w), v=np.zeros_like(w))


def tf1_momentum(momentum, weight_decay=0.0):
  """tf.train.MomentumOptimizer; with weight_decay, EasyRec's MomentumWOptimizer."""
  def step(w, g, lr, t, s):
    w = w - weight_decay * w
    accum = momentum * s + g
    return w - lr * accum, accum
  return step, np.zeros_like


def tf1_rms_prop(decay, momentum, epsilon):
  """tf.train.RMSPropOptimizer (centered=False): ms starts at ones."""
  def step(w, g, lr, t, s):
    ms = decay * s['ms'] + (1 - decay) * g * g
    mom = momentum * s['mom'] + lr * g / np.sqrt(ms + epsilon)
    return w - mom, dict(ms=ms, mom=mom)
  return step, lambda w: dict(ms=np.ones_like(w), mom=np.zeros_like(w))


def tf1_adagrad(initial_accumulator_value):
  def step(w, g, lr, t, accum):
    accum = accum + g * g
    return w - lr * g / np.sqrt(accum), accum
  return step, lambda w: np.full_like(w, initial_accumulator_value)


def tf1_ftrl(lr_power, initial_accumulator_value, l1, l2, l2_shrinkage):
  """tf.train.FtrlOptimizer: the ApplyFtrl / ApplyFtrlV2 kernels' documented rule."""
  def step(w, g, lr, t, s):
    accum, linear = s
    g_shrunk = g + 2 * l2_shrinkage * w
    accum_new = accum + g * g
    linear = linear + g_shrunk - (accum_new ** -lr_power - accum ** -lr_power) / lr * w
    quadratic = 1.0 / (accum_new ** lr_power * lr) + 2 * l2
    w = np.where(np.abs(linear) > l1, (np.sign(linear) * l1 - linear) / quadratic, 0.0)
    return w, (accum_new, linear)
  return step, lambda w: (np.full_like(w, initial_accumulator_value), np.zeros_like(w))


CASES = {
    'adam': ('adam_optimizer', {}, tf1_adam(0.9, 0.999)),
    'adam_betas': ('adam_optimizer', dict(beta1=0.5, beta2=0.9), tf1_adam(0.5, 0.9)),
    'adam_async': ('adam_async_optimizer', dict(beta1=0.8), tf1_adam(0.8, 0.999)),
    'adamw': ('adamw_optimizer', dict(weight_decay=0.02), tf1_adam(0.9, 0.999, weight_decay=0.02)),
    'adamw_default': ('adamw_optimizer', {}, tf1_adam(0.9, 0.999, weight_decay=1e-6)),
    'adam_asyncw': ('adam_asyncw_optimizer', dict(weight_decay=0.05, beta2=0.99),
                    tf1_adam(0.9, 0.99, weight_decay=0.05)),
    'momentum': ('momentum_optimizer', {}, tf1_momentum(0.9)),
    'momentum_half': ('momentum_optimizer', dict(momentum_optimizer_value=0.5), tf1_momentum(0.5)),
    'momentumw': ('momentumw_optimizer', dict(weight_decay=0.03),
                  tf1_momentum(0.9, weight_decay=0.03)),
    'rms_prop': ('rms_prop_optimizer', {}, tf1_rms_prop(0.9, 0.9, 1.0)),  # EasyRec's defaults
    'rms_prop_small_eps': ('rms_prop_optimizer', dict(decay=0.8, momentum_optimizer_value=0.3,
                                                      epsilon=1e-6), tf1_rms_prop(0.8, 0.3, 1e-6)),
    'adagrad': ('adagrad_optimizer', {}, tf1_adagrad(0.1)),
    'adagrad_accum': ('adagrad_optimizer', dict(initial_accumulator_value=0.5), tf1_adagrad(0.5)),
    'ftrl': ('ftrl_optimizer', {}, tf1_ftrl(-0.5, 0.1, 0.0, 0.0, 0.0)),
    'ftrl_regularized': ('ftrl_optimizer', dict(l1_reg=0.05, l2_reg=0.1, l2_shrinkage_reg=0.2,
                                                initial_accumulator_value=0.3),
                         tf1_ftrl(-0.5, 0.3, 0.05, 0.1, 0.2)),
    'ftrl_power': ('ftrl_optimizer', dict(learning_rate_power=-0.7, l1_reg=0.01),
                   tf1_ftrl(-0.7, 0.1, 0.01, 0.0, 0.0)),
    'ftrl_fixed_rate': ('ftrl_optimizer', dict(learning_rate_power=0.0, l2_reg=0.5),
                        tf1_ftrl(0.0, 0.1, 0.0, 0.5, 0.0)),
}


@pytest.mark.parametrize('case', list(CASES))
def test_optimizer_follows_tf1(case):
  name, fields, (step_fn, init_slots) = CASES[case]
  got = run_optax(train_config(name, **fields))
  want = run_reference(step_fn, init_slots)
  start, _ = problem()
  jax.tree.map(lambda g, w, s: np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-6), got,
               want, start)
  # The run moved the weights (a rule that does nothing would pass trivially otherwise).
  assert not np.allclose(jax.tree.leaves(got)[0], jax.tree.leaves(start)[0], atol=1e-3)


def test_ftrl_l1_zeroes_weights():
  """A large l1_reg zeroes every weight (|linear| <= l1), as the TF1 kernel does."""
  got = run_optax(train_config('ftrl_optimizer', l1_reg=100.0))
  assert all(np.all(np.asarray(leaf) == 0) for leaf in jax.tree.leaves(got))


def test_every_optimizer_has_a_builder():
  assert set(optimizer_lib.OPTIMIZERS) == set(schema.OPTIMIZER_CONFIG.oneof)
  assert {c[0] for c in CASES.values()} == set(schema.OPTIMIZER_CONFIG.oneof) - {
      'lazy_adam_optimizer'}  # lazy Adam: test_sparse_optimizer.py


@pytest.mark.parametrize('name', ['ftrl_optimizer', 'rms_prop_optimizer', 'adamw_optimizer'])
def test_traced_base_rate_per_replica(name):
  """Optimizer.apply with a vmapped base rate (a sweep's replicas) equals each rate alone."""
  opt = optimizer_lib.Optimizer(train_config(name), (), param_axes={})  # no tables
  params, grads = problem()
  params = jax.tree.map(jnp.float32, params)

  def run(base):
    p, state = params, opt.init(params)
    for g in grads:
      p, state = opt.apply(jax.tree.map(jnp.float32, g), {}, state, p, {}, base)
    return p

  bases = jnp.array([0.1, 0.01])
  together = jax.vmap(run)(bases)
  for r, base in enumerate([0.1, 0.01]):
    alone = run(base)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[r], b, rtol=1e-5, atol=1e-7),
                 together, alone)
  np.testing.assert_allclose(opt.rate(3, 0.01), 0.03)  # past step 2: schedule[0]'s rate


def tiny_with(optimizer_config):
  raw = mmoe.get_config('tiny').to_dict()
  raw['train_config']['optimizer_config'] = optimizer_config
  return raw


def with_lr(learning_rate, name='adam_optimizer', **fields):
  return tiny_with({name: dict(learning_rate=learning_rate, **fields)})


PATH = 'train_config.optimizer_config'


@pytest.mark.parametrize('config,match', [
    (with_lr({'exponential_decay_learning_rate': {'decay_steps': 0}}),
     rf'{PATH}.adam_optimizer.learning_rate.exponential_decay_learning_rate.decay_steps: 0 must '
     'be > 0'),
    (with_lr({'constant_learning_rate': {'learning_rate': -0.1}}),
     r'constant_learning_rate.learning_rate: -0.1 must be >= 0'),
    (with_lr({'exponential_decay_learning_rate': {'burnin_learning_rate': 0.1}}),
     r'exponential_decay_learning_rate.burnin_steps: must be > 0 with burnin_learning_rate'),
    (with_lr({'manual_step_learning_rate': {}}),
     r'manual_step_learning_rate.schedule: empty'),
    (with_lr({'manual_step_learning_rate': {'schedule': [{'step': 10}, {'step': 10}]}}),
     r'manual_step_learning_rate.schedule\[1\].step: 10, but steps must increase'),
    (with_lr({'manual_step_learning_rate': {'schedule': [{'step': 0}]}}),
     r'manual_step_learning_rate.schedule\[0\].step: 0 must be > 0'),
    (with_lr({'manual_step_learning_rate': {'schedule': [{'step': 5, 'learning_rate': -1.0}]}}),
     r'schedule\[0\].learning_rate: -1.0 must be >= 0'),
    (with_lr({'cosine_decay_learning_rate': {'warmup_learning_rate': 0.01}}),
     r'cosine_decay_learning_rate.warmup_learning_rate: 0.01 is above learning_rate_base'),
    (with_lr({'cosine_decay_learning_rate': {'total_steps': 100, 'warmup_steps': 60,
                                             'hold_base_rate_steps': 40}}),
     r'cosine_decay_learning_rate.total_steps: 100 must be above warmup_steps \+ '
     r'hold_base_rate_steps \(100\)'),
    (with_lr({'poly_decay_learning_rate': {'learning_rate_base': 0.1, 'power': 1.0}}),
     r'poly_decay_learning_rate.total_steps.*required field of PolyDecayLearningRate'),
    (with_lr({'poly_decay_learning_rate': {'learning_rate_base': 0.1, 'power': 1.0,
                                           'total_steps': -3}}),
     r'poly_decay_learning_rate.total_steps: -3 must be > 0'),
    (with_lr({'transformer_learning_rate': {'learning_rate_base': 1.0, 'hidden_size': 0,
                                            'warmup_steps': 10}}),
     r'transformer_learning_rate.hidden_size: 0 must be > 0'),
    (with_lr({'constant_learning_rate': {}}, beta2=1.0),
     rf'{PATH}.adam_optimizer.beta2: 1.0 must be in \[0, 1\)'),
    (with_lr({'constant_learning_rate': {}}, 'adagrad_optimizer', initial_accumulator_value=0.0),
     rf'{PATH}.adagrad_optimizer.initial_accumulator_value: 0.0 must be > 0'),
    (with_lr({'constant_learning_rate': {}}, 'ftrl_optimizer', learning_rate_power=0.5),
     rf'{PATH}.ftrl_optimizer.learning_rate_power: 0.5 must be <= 0'),
    (with_lr({'constant_learning_rate': {}}, 'ftrl_optimizer', l1_reg=-1.0),
     rf'{PATH}.ftrl_optimizer.l1_reg: -1.0 must be >= 0'),
    (with_lr({'constant_learning_rate': {}}, 'adamw_optimizer', weight_decay=-1e-4),
     rf'{PATH}.adamw_optimizer.weight_decay: -0.0001 must be >= 0'),
    (with_lr({'constant_learning_rate': {}}, 'rms_prop_optimizer', decay=1.5),
     rf'{PATH}.rms_prop_optimizer.decay: 1.5 must be in \[0, 1\]'),
    (tiny_with({'rms_prop_optimizer': {'learning_rate': {'constant_learning_rate': {}}},
                'use_moving_average': True}),
     rf'{PATH}.use_moving_average: not supported'),
    (tiny_with({'rms_prop_optimizer': {'learning_rate': {'constant_learning_rate': {}}},
                'moving_average_decay': 0.99}),
     rf'{PATH}.moving_average_decay: unknown field of Optimizer'),
], ids=lambda x: x if isinstance(x, str) and len(x) < 20 else None)
def test_impossible_values_name_their_field(config, match):
  with pytest.raises(ConfigError, match=match):
    validate(config)


@pytest.mark.parametrize('name', sorted(schema.OPTIMIZER_CONFIG.oneof))
def test_every_optimizer_and_its_defaults_validate(name):
  config = validate(with_lr({'cosine_decay_learning_rate': {}}, name))
  assert name in config.train_config.optimizer_config


def test_ftrl_trains(tiny_config):
  """FTRL reads the params in its update: the train step passes them."""
  from mmoe_jax.training import train_lib
  tiny_config.train_config.optimizer_config = complete(
      {'ftrl_optimizer': {'learning_rate': {'constant_learning_rate': {'learning_rate': 0.05}},
                          'l2_shrinkage_reg': 0.01}}, schema.OPTIMIZER_CONFIG)
  tiny_config.train_config.update(num_steps=4, save_checkpoints_steps=4, log_step_count_steps=2)
  final = train_lib.train_and_evaluate(tiny_config)
  assert final['step'] == 4 and np.isfinite(final['auc_ctr'])
