"""Sample weights, task spaces, several losses per tower and loss weighting
(docs/training_signals.md), against numpy written from EasyRec's definitions
(../shared/reference/mtl.md 1.3, 5, 6, 7)."""

import logging

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mmoe_jax.config import ConfigError, load_config, validate
from mmoe_jax.training import losses

# A DBMTL on a small CSV: two labels, two id features, a weight column, a scene and a session.
PIPELINE = """
model_dir: "MODEL_DIR"
train_input_path: "TRAIN"
train_config {
  optimizer_config { adam_optimizer { learning_rate { constant_learning_rate {
    learning_rate: 0.01 } } } }
  num_steps: 3
  save_checkpoints_steps: 3
  log_step_count_steps: 3
}
data_config {
  input_fields { input_name: "clk" input_type: INT32 }
  input_fields { input_name: "buy" input_type: INT32 }
  input_fields { input_name: "user" input_type: STRING }
  input_fields { input_name: "item" input_type: STRING }
  input_fields { input_name: "w" input_type: FLOAT }
  input_fields { input_name: "scene" input_type: STRING }
  label_fields: ["clk", "buy"]
  batch_size: 32
  DATA
}
feature_configs { input_names: "user" feature_type: IdFeature embedding_dim: 4
                  hash_bucket_size: 50 }
feature_configs { input_names: "item" feature_type: IdFeature embedding_dim: 4 num_buckets: 20 }
model_config {
  model_class: "DBMTL"
  feature_groups { group_name: "all" feature_names: ["user", "item"] }
  dbmtl {
    bottom_dnn { hidden_units: [8] }
    task_towers { tower_name: "ctr" label_name: "clk" dnn { hidden_units: [4] } CTR }
    task_towers { tower_name: "cvr" label_name: "buy" dnn { hidden_units: [4] }
                  relation_tower_names: "ctr" relation_dnn { hidden_units: [4] } CVR }
  }
  MODEL
}
"""
ROWS = 96


def write_csv(path, rows=ROWS, seed=0):
  rng = np.random.default_rng(seed)
  clk = rng.integers(0, 2, rows)
  buy = clk * rng.integers(0, 2, rows)
  scenes = np.array(['home', 'search', ''])
  with open(path, 'w') as f:
    for i in range(rows):
      f.write(f'{clk[i]},{buy[i]},u{rng.integers(30)},{rng.integers(20)},'
              f'{[0.0, 0.5, 2.0][i % 3]},{scenes[i % 3]}\n')


def config_file(tmp_path, ctr='', cvr='', data='', model=''):
  train = tmp_path / 'train.csv'
  if not train.exists():
    write_csv(train)
  text = PIPELINE
  for key, value in dict(MODEL_DIR=str(tmp_path / 'model'), TRAIN=str(train), CTR=ctr, CVR=cvr,
                         DATA=data, MODEL=model).items():
    text = text.replace(key, value)
  path = tmp_path / 'pipeline.config'
  path.write_text(text)
  return str(path)


def load(tmp_path, **parts):
  return validate(load_config(config_file(tmp_path, **parts)))


def bce(z, y):
  return np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))


def sigmoid(z):
  return 1 / (1 + np.exp(-z))


# -- the reduction and the per-sample weights (mtl.md 0, 6.2) --


def test_nzmean_divides_by_the_nonzero_weights():
  loss = np.array([1.0, 2.0, 3.0, 4.0])
  weight = np.array([0.0, 0.5, 2.0, 0.0])
  want = (0.5 * 2 + 2 * 3) / 2  # two non-zero weights; not sum(w l) / sum(w)
  np.testing.assert_allclose(losses.nzmean(jnp.array(loss), jnp.array(weight)), want)
  assert float(losses.nzmean(jnp.array(loss), jnp.zeros(4))) == 0.0


def test_weights_of_sample_weight_and_both_task_spaces(tmp_path):
  config = load(tmp_path, data='sample_weight: "w"', cvr="""
      task_space_indicator_label: "clk" in_task_space_weight: 3 out_task_space_weight: 0.5
      task_space_indicator_name: "scene" task_space_indicator_value: "search" """,
                ctr='use_sample_weight: false')
  plan = losses.LossPlan.of(config)
  from mmoe_jax.data import signals
  labels = {'clk': jnp.array([1., 0., 1., 0.]), signals.SAMPLE_WEIGHT: jnp.array([0., .5, 2., 1.]),
            signals.mask_key('scene', 'search'): jnp.array([1., 1., 0., 0.])}
  cvr = losses.sample_weights(labels, plan.towers['cvr'], 4)
  # s x (3 if clk > 0 else 0.5) x (3 if scene == search else 0.5): the factors multiply
  np.testing.assert_allclose(cvr, [0 * 3 * 3, .5 * .5 * 3, 2 * 3 * .5, 1 * .5 * .5])
  np.testing.assert_allclose(losses.sample_weights(labels, plan.towers['ctr'], 4), np.ones(4))
  # TorchEasyRec's normalisation: nzmean of the rescaled weights is sum(w l) / sum(w)
  loss = jnp.array([1.0, 2.0, 3.0, 4.0])
  w = np.array([0, .75, 3, .25])
  rescaled = losses.sample_weights(labels, plan.towers['cvr'], 4, 'WEIGHTED_MEAN')
  np.testing.assert_allclose(losses.nzmean(loss, rescaled), np.sum(w * loss) / np.sum(w),
                             rtol=1e-6)


# -- several losses per tower: keys and weights (mtl.md 6.3, 6.4, 7) --


def test_each_loss_of_a_tower_gets_its_own_weight_and_key(tmp_path):
  config = load(tmp_path, ctr="""weight: 2
      losses { loss_type: CLASSIFICATION weight: 3 loss_name: "ctr_a" }
      losses { loss_type: CLASSIFICATION weight: 0.25 }""",
                cvr='losses { loss_type: L2_LOSS weight: 4 }')
  assert config.model_config.dbmtl.task_towers[1].loss_type == 'L2_LOSS'  # its head: y
  plan = losses.LossPlan.of(config)
  z = {'ctr': jnp.array([0.5, -1.0, 2.0]), 'cvr': jnp.array([0.2, 0.4, 1.0])}
  y = {'clk': jnp.array([1.0, 0.0, 0.0]), 'buy': jnp.array([0.0, 1.0, 1.0])}
  values, _ = losses.task_losses(z, y, plan)
  ce = np.mean(bce(np.asarray(z['ctr']), np.asarray(y['clk'])))
  # each its own weight x the tower's (EasyRec gives both 3 x 2: mtl.md 6.4)
  np.testing.assert_allclose(values['ctr_a'], 3 * 2 * ce, rtol=1e-6)
  np.testing.assert_allclose(values['cross_entropy_loss_ctr'], 0.25 * 2 * ce, rtol=1e-6)
  np.testing.assert_allclose(values['l2_loss_cvr'], 4 * np.mean((np.array([0, 1, 1]) -
                                                                 np.array([.2, .4, 1])) ** 2),
                             rtol=1e-6)
  assert set(values) == {'ctr_a', 'cross_entropy_loss_ctr', 'l2_loss_cvr'}


@pytest.mark.parametrize('ctr, cvr, match', [
    ('losses { loss_type: CLASSIFICATION } losses { loss_type: CLASSIFICATION }', '',
     r"task_towers\[0\]\.losses\[1\]: its loss key 'cross_entropy_loss_ctr' is also the key "
     r'of model_config\.dbmtl\.task_towers\[0\]\.losses\[0\]'),
    ('losses { loss_type: CLASSIFICATION loss_name: "x" }',
     'losses { loss_type: CLASSIFICATION loss_name: "x" }',
     r"task_towers\[1\]\.losses\[0\]: its loss key 'x' is also the key"),
])
def test_loss_key_collisions_are_errors(tmp_path, ctr, cvr, match):
  with pytest.raises(ConfigError, match=match):
    losses.LossPlan.of(load(tmp_path, ctr=ctr, cvr=cvr))


def test_mixed_heads_are_an_error(tmp_path):
  with pytest.raises(ConfigError, match=r'model_config\.dbmtl\.task_towers\[0\]\.losses\[1\]'
                     r'\.loss_type: .*head'):
    load(tmp_path, ctr='losses { loss_type: CLASSIFICATION } losses { loss_type: L2_LOSS }')


# -- ORDER_CALIBRATE_LOSS (mtl.md 5) --

CALIBRATED = """weight: 5
    losses { loss_type: CLASSIFICATION }
    losses { loss_type: ORDER_CALIBRATE_LOSS weight: 0.5 }"""


def test_order_calibrate_value_and_gradients_reach_both_towers(tmp_path):
  plan = losses.LossPlan.of(load(tmp_path, cvr=CALIBRATED))
  z = {'ctr': jnp.array([0.5, -1.0, 2.0, 0.0]), 'cvr': jnp.array([1.0, 0.0, -3.0, 0.5])}
  y = {'clk': jnp.ones(4), 'buy': jnp.zeros(4)}
  values, _ = losses.task_losses(z, y, plan)
  p_cvr, p_ctr = sigmoid(np.asarray(z['cvr'])), sigmoid(np.asarray(z['ctr']))
  # loss.weight x mean relu(p_cvr - p_ctr); no tower weight
  np.testing.assert_allclose(values['order_calibrate_loss'],
                             0.5 * np.mean(np.maximum(p_cvr - p_ctr, 0)), rtol=1e-6)
  grads = jax.grad(lambda z: losses.task_losses(z, y, plan)[0]['order_calibrate_loss'])(z)
  assert np.all(np.asarray(grads['ctr'])[[0, 1]] < 0) and np.all(np.asarray(grads['cvr'])[[0, 1]] > 0)
  assert np.all(np.asarray(grads['ctr'])[[2]] == 0)  # p_cvr < p_ctr: no penalty


def test_order_calibrate_without_relations_warns_that_it_is_empty(tmp_path, caplog):
  config = load(tmp_path, ctr=CALIBRATED)  # the ctr tower reads no other tower
  with caplog.at_level(logging.WARNING, logger='mmoe_jax'):
    plan = losses.LossPlan.of(config)
  assert [t.key for t in plan.terms] == ['cross_entropy_loss_ctr', 'cross_entropy_loss_cvr']
  assert 'task_towers[0].losses: ORDER_CALIBRATE_LOSS on tower \'ctr\' is empty' in caplog.text


def test_order_calibrate_on_two_towers_is_an_error(tmp_path):
  with pytest.raises(ConfigError, match=r"task_towers\[1\]\.losses\[1\]\.loss_type: "
                     r"ORDER_CALIBRATE_LOSS is also on tower 'ctr'"):
    load(tmp_path, ctr=CALIBRATED, cvr=CALIBRATED)


def test_aitm_samples_towers_read_from_a_config_file(tmp_path):
  """The task towers of EasyRec's aitm_on_taobao.config (a backbone MultiTaskModel): a cvr
  tower with CLASSIFICATION and an (empty: no relation_tower_names) ORDER_CALIBRATE_LOSS."""
  text = open(config_file(tmp_path)).read()
  start = text.index('model_config {')
  text = text[:start] + """model_config {
  model_class: "MultiTaskModel"
  feature_groups { group_name: "all" feature_names: ["user", "item"] }
  backbone {
    blocks { name: "share_bottom" inputs { feature_group_name: "all" }
             keras_layer { class_name: 'MLP' mlp { hidden_units: [8] } } }
    output_blocks: ["share_bottom", "share_bottom"]
  }
  model_params {
    task_towers {
      tower_name: "ctr" label_name: "clk" loss_type: CLASSIFICATION
      metrics_set: { auc {} } dnn { hidden_units: 4 } weight: 1.0
    }
    task_towers {
      tower_name: "cvr" label_name: "buy"
      losses { loss_type: CLASSIFICATION }
      losses { loss_type: ORDER_CALIBRATE_LOSS }
      metrics_set: { auc {} } dnn { hidden_units: 4 } weight: 1.0
    }
    l2_regularization: 1e-6
  }
}
"""
  path = tmp_path / 'aitm.config'
  path.write_text(text)
  config = validate(load_config(str(path)))
  cvr = config.model_config.model_params.task_towers[1]
  assert [(l.loss_type, l.weight, l.loss_name, l.learn_loss_weight) for l in cvr.losses] == [
      ('CLASSIFICATION', 1.0, '', False), ('ORDER_CALIBRATE_LOSS', 1.0, '', False)]
  plan = losses.LossPlan.of(config)
  assert [(t.key, t.weight) for t in plan.terms] == [('cross_entropy_loss_ctr', 1.0),
                                                     ('cross_entropy_loss_cvr', 1.0)]


# -- end to end --


def test_config_with_every_signal_trains(tmp_path):
  """Task spaces, sample weights, two losses in one tower and learnt (Uncertainty) weights,
  from a .config file: the signals reach the batch, and steps train the learnt weight."""
  from mmoe_jax import data as data_lib
  from mmoe_jax.data import signals
  from mmoe_jax.training import input_pipeline
  from mmoe_jax.training.trainer import LOSS_WEIGHT, Trainer
  config = load(tmp_path, data='sample_weight: "w"', model='loss_weight_strategy: Uncertainty',
                ctr="""task_space_indicator_name: "scene" task_space_indicator_value: "home"
      out_task_space_weight: 0.5""", cvr="""task_space_indicator_label: "clk"
      out_task_space_weight: 0
      losses { loss_type: CLASSIFICATION learn_loss_weight: true }
      losses { loss_type: CLASSIFICATION loss_name: "cvr_fixed" weight: 0.5 }
      losses { loss_type: ORDER_CALIBRATE_LOSS }""")
  columns = data_lib.load(config.train_input_path, config)
  np.testing.assert_array_equal(columns.labels[signals.SAMPLE_WEIGHT][:6], [0, .5, 2] * 2)
  np.testing.assert_array_equal(columns.labels[signals.mask_key('scene', 'home')][:6],
                                [1, 0, 0] * 2)
  batch = input_pipeline.batch(columns, np.arange(32))
  trainer = Trainer(config, batch)
  state = trainer.init_state()
  assert float(state['params'][LOSS_WEIGHT]['cross_entropy_loss_cvr']) == 0.0  # EasyRec's init
  step = jax.jit(trainer.step)
  for _ in range(3):
    learnt = float(state['params'][LOSS_WEIGHT]['cross_entropy_loss_cvr'])
    state, metrics = step(state, batch)
  np.testing.assert_allclose(metrics['loss_weight/cross_entropy_loss_cvr'], np.exp(-learnt),
                             rtol=1e-5)
  assert learnt != 0.0 and np.isfinite(metrics['total_loss'])
  assert {'cross_entropy_loss_ctr', 'cross_entropy_loss_cvr', 'cvr_fixed',
          'order_calibrate_loss'} <= set(metrics)


# -- loss weighting strategies (mtl.md 6.3, 6.5) --


def towers(*specs):
  """Completed task towers from (tower_name, label_name, losses) specs."""
  from mmoe_jax.config import complete, schema
  return tuple(complete(dict(tower_name=t, label_name=y, losses=l), schema.TASK_TOWER)
               for t, y, l in specs)


def strategy(name, pareto=False):
  return dict(loss_weight_strategy=name, use_pareto_loss_weight=pareto,
              sample_weight_reduction='SUM_BY_NONZERO_WEIGHTS')


def test_uncertainty_weights_learn_the_inverse_noise_variance():
  """Two regressions whose noise variances differ 4x: at the optimum of
  0.5 exp(-s) L + s / 2, exp(-s) = 1 / L, so the learnt weights end in a ratio near 4."""
  learn = (dict(loss_type='L2_LOSS', learn_loss_weight=True),)
  plan = losses.LossPlan.build(towers(('a', 'ya', learn), ('b', 'yb', learn)),
                               strategy('Uncertainty'))
  assert plan.learnt_keys == ('l2_loss_a', 'l2_loss_b')
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2000, 3)).astype(np.float32)
  labels = {'ya': x @ np.array([1., -2., .5], np.float32) + rng.normal(0, 1.0, 2000),
            'yb': x @ np.array([-1., 1., 2.], np.float32) + rng.normal(0, 2.0, 2000)}
  labels = {k: jnp.asarray(v, jnp.float32) for k, v in labels.items()}
  params = dict(a=jnp.zeros(3), b=jnp.zeros(3), s=dict(l2_loss_a=0.0, l2_loss_b=0.0))

  def loss(params):
    values, _ = losses.task_losses({t: x @ params[t] for t in 'ab'}, labels, plan,
                                   learnt=params['s'])
    return sum(values.values())

  tx = optax.adam(0.05)

  def step(carry, _):
    params, opt = carry
    updates, opt = tx.update(jax.grad(loss)(params), opt)
    return (optax.apply_updates(params, updates), opt), None

  (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=600)
  ratio = float(jnp.exp(params['s']['l2_loss_b'] - params['s']['l2_loss_a']))
  assert 3.5 < ratio < 4.5, ratio  # exp(-s_a) / exp(-s_b)


def test_random_weights_sum_to_one_and_change_every_draw():
  plan = losses.LossPlan.build(towers(
      ('a', 'y', (dict(loss_type='CLASSIFICATION', weight=7.0),
                  dict(loss_type='CLASSIFICATION', loss_name='a2'))),
      ('b', 'y', ())), strategy('Random'))
  assert plan.num_slots == 3
  z = {'a': jnp.array([0.3, -1.0]), 'b': jnp.array([2.0, 0.1])}
  y = {'y': jnp.array([1.0, 0.0])}
  draws = []
  for seed in range(2):
    values, weights = losses.task_losses(z, y, plan, rng=jax.random.PRNGKey(seed))
    assert set(weights) == {'cross_entropy_loss_a', 'a2', 'cross_entropy_loss_b'}
    np.testing.assert_allclose(sum(weights.values()), 1.0, rtol=1e-6)
    ce = np.mean(bce(np.asarray(z['a']), np.asarray(y['y'])))  # replaces the 7
    np.testing.assert_allclose(values['cross_entropy_loss_a'],
                               weights['cross_entropy_loss_a'] * ce, rtol=1e-6)
    draws.append([float(weights[k]) for k in sorted(weights)])
  assert not np.allclose(draws[0], draws[1])


def min_norm_on_segment(g1, g2, c1=0.0, c2=0.0):
  """argmin over a in [c1, 1 - c2] of |a g1 + (1 - a) g2|, by a fine grid."""
  grid = np.linspace(c1, 1 - c2, 100001)
  norms = np.linalg.norm(grid[:, None] * g1 + (1 - grid[:, None]) * g2, axis=1)
  return grid[np.argmin(norms)]


@pytest.mark.parametrize('g1, g2, c', [
    ([1.0, 0.0], [0.0, 2.0], (0.0, 0.0)),  # the interior: a = 4/5
    ([1.0, 0.0], [0.5, 0.0], (0.0, 0.0)),  # the smaller gradient wins: a = 0
    ([1.0, 0.0], [0.0, 2.0], (0.0, 0.3)),  # a clipped to 1 - c2 = 0.7
    ([3.0, 1.0], [-1.0, 0.5], (0.1, 0.2)),
])
def test_pareto_weights_of_two_losses_are_the_min_norm_point_of_the_segment(g1, g2, c):
  g = np.array([g1, g2])
  a = losses.pareto_weights(jnp.asarray(g @ g.T), c)
  np.testing.assert_allclose(a, [min_norm_on_segment(g[0], g[1], *c),
                                 1 - min_norm_on_segment(g[0], g[1], *c)], atol=1e-4)


def test_pareto_weights_of_three_losses_match_a_brute_force_search():
  rng = np.random.default_rng(3)
  for c in ((0.0, 0.0, 0.0), (0.1, 0.0, 0.2)):
    g = rng.normal(size=(3, 5))
    a = np.asarray(losses.pareto_weights(jnp.asarray(g @ g.T), c))
    # every (a1, a2, a3) >= c summing to 1, on a grid of step 1/400
    steps = np.arange(401) / 400
    a1, a2 = np.meshgrid(steps, steps, indexing='ij')
    grid = np.stack([a1, a2, 1 - a1 - a2], -1).reshape(-1, 3)
    grid = grid[np.all(grid >= np.array(c) - 1e-12, axis=1)]
    norms = np.linalg.norm(grid @ g, axis=1)
    best = grid[np.argmin(norms)]
    assert np.all(a >= np.array(c) - 1e-6) and abs(a.sum() - 1) < 1e-5
    assert np.linalg.norm(a @ g) <= norms.min() + 1e-3
    np.testing.assert_allclose(a, best, atol=2e-2)


def test_pareto_step_weighs_the_losses_inside_the_jitted_step(tmp_path):
  from mmoe_jax import data as data_lib
  from mmoe_jax.training import input_pipeline
  from mmoe_jax.training.trainer import Trainer
  config = load(tmp_path, model='use_pareto_loss_weight: true', ctr='pareto_min_loss_weight: 0.1',
                cvr='losses { loss_type: CLASSIFICATION } losses { loss_type: CLASSIFICATION '
                'loss_name: "cvr_b" }')
  columns = data_lib.load(config.train_input_path, config)
  batch = input_pipeline.batch(columns, np.arange(32))
  trainer = Trainer(config, batch)
  _, metrics = jax.jit(trainer.step)(trainer.init_state(), batch)
  keys = ['cross_entropy_loss_ctr', 'cross_entropy_loss_cvr', 'cvr_b']
  weights = np.array([metrics[f'loss_weight/{k}'] for k in keys])
  assert abs(weights.sum() - 1) < 1e-5 and weights[0] >= 0.1 - 1e-6 and np.all(weights >= 0)
  np.testing.assert_allclose(metrics['total_loss'], sum(metrics[k] for k in keys)
                             + metrics['regularization_loss'], rtol=1e-5)


# -- errors name the field; what EasyRec ignores silently is refused --


@pytest.mark.parametrize('parts, match', [
    (dict(cvr='losses { loss_type: CLASSIFICATION learn_loss_weight: true }'),
     r'task_towers\[1\]\.losses\[0\]\.learn_loss_weight: needs model_config\.loss_weight_strategy '
     'Uncertainty, got Fixed'),
    (dict(cvr='losses { loss_type: CLASSIFICATION learn_loss_weight: true }',
          model='loss_weight_strategy: Random'),
     r'losses\[0\]\.learn_loss_weight: needs .* got Random'),
    (dict(cvr='losses { loss_type: CLASSIFICATION } losses { loss_type: ORDER_CALIBRATE_LOSS '
          'learn_loss_weight: true }', model='loss_weight_strategy: Uncertainty'),
     r'losses\[1\]\.learn_loss_weight: ORDER_CALIBRATE_LOSS has no learnt weight'),
    (dict(ctr='task_space_indicator_name: "scene"'),
     r'task_towers\[0\]\.task_space_indicator_value: unset'),
    (dict(ctr='task_space_indicator_name: "w" task_space_indicator_value: "1"'),
     r"task_towers\[0\]\.task_space_indicator_name: input field 'w' is FLOAT"),
    (dict(ctr='task_space_indicator_label: "user"'),
     r"task_towers\[0\]\.task_space_indicator_label: unknown label field 'user'"),
    (dict(data='sample_weight: "weight"'),
     r"data_config\.sample_weight: unknown input field 'weight'"),
    (dict(cvr='losses { loss_type: JRC_LOSS }'),
     r'task_towers\[1\]\.(losses\[0\]\.loss_type|num_class): JRC_LOSS needs num_class 2'),
    (dict(cvr='num_class: 2 losses { loss_type: JRC_LOSS }'),
     r'task_towers\[1\]\.losses\[0\]\.jrc_loss: JRC_LOSS needs jrc_loss'),
    (dict(cvr='losses { loss_type: BINARY_FOCAL_LOSS pairwise_loss { } }'),
     r'losses\[0\]\.pairwise_loss: parameters of another loss type than BINARY_FOCAL_LOSS'),
    (dict(cvr='losses { loss_type: PAIR_WISE_LOSS pairwise_loss { session_name: "sess" } }'),
     r"losses\[0\]\.pairwise_loss\.session_name: unknown input field 'sess'"),
    (dict(cvr='losses { loss_type: ORDER_CALIBRATE_LOSS }'),
     r'task_towers\[1\]\.losses: ORDER_CALIBRATE_LOSS alone gives the tower no output'),
    (dict(model='use_pareto_loss_weight: true', ctr='pareto_min_loss_weight: 0.5',
          cvr='pareto_min_loss_weight: 0.5'),
     r'pareto_min_loss_weight: the least weights of all losses sum to 1; it must be < 1'),
    (dict(model='use_pareto_loss_weight: true loss_weight_strategy: Random'),
     r'model_config\.use_pareto_loss_weight: .* loss_weight_strategy must be Fixed, got Random'),
    (dict(model='sample_weight_reduction: "MEAN"'),
     r"model_config\.sample_weight_reduction: 'MEAN' is not one of"),
])
def test_errors_name_the_field(tmp_path, parts, match):
  with pytest.raises(ConfigError, match=match):
    load(tmp_path, **parts)


def test_esmm_refuses_what_it_ignores(tmp_path):
  text = open(config_file(tmp_path)).read()
  start = text.index('model_config {')
  esmm = text[:start] + """model_config {
  model_class: "ESMM"
  feature_groups { group_name: "all" feature_names: ["user", "item"] }
  esmm {
    cvr_tower { tower_name: "cvr" label_name: "buy" losses { loss_type: CLASSIFICATION } }
    ctr_tower { tower_name: "ctr" label_name: "clk" }
  }
}"""
  path = tmp_path / 'esmm.config'
  path.write_text(esmm)
  with pytest.raises(ConfigError, match=r'model_config\.esmm\.cvr_tower\.losses: ESMM computes '
                     'its own losses'):
    validate(load_config(str(path)))


def test_an_unimplemented_loss_type_is_an_error_naming_the_loss(tmp_path):
  with pytest.raises(ConfigError, match=r'model_config\.dbmtl\.task_towers\[1\]\.losses\[0\]'
                     r'\.loss_type = PAIRWISE_HINGE_LOSS: not implemented'):
    load(tmp_path, cvr='losses { loss_type: PAIRWISE_HINGE_LOSS }')


# -- the .config reader and converter keep every new field --

EVERY_FIELD = dict(
    data='sample_weight: "w"',
    model='loss_weight_strategy: Uncertainty sample_weight_reduction: "WEIGHTED_MEAN"',
    ctr="""task_space_indicator_label: "clk" in_task_space_weight: 2 out_task_space_weight: 0
      task_space_indicator_name: "scene" task_space_indicator_value: "home"
      use_sample_weight: false pareto_min_loss_weight: 0.25
      losses { loss_type: CLASSIFICATION weight: 0.5 loss_name: "ctr_ce"
               learn_loss_weight: true }
      losses { loss_type: BINARY_FOCAL_LOSS binary_focal_loss { gamma: 1.5 alpha: 0.25
               ohem_ratio: 0.5 label_smoothing: 0.1 } }
      losses { loss_type: PAIR_WISE_LOSS pairwise_loss { margin: 0.1 session_name: "user"
               temperature: 2 } }
      losses { loss_type: PAIRWISE_FOCAL_LOSS pairwise_focal_loss { gamma: 1 alpha: 0.5
               hinge_margin: 0.5 session_name: "user" ohem_ratio: 0.9 temperature: 0.5 } }
      losses { loss_type: PAIRWISE_LOGISTIC_LOSS pairwise_logistic_loss { temperature: 3
               session_name: "user" hinge_margin: 0.2 ohem_ratio: 0.8 use_label_margin: true } }
      losses { loss_type: F1_REWEIGHTED_LOSS f1_reweighted_loss { f1_beta_square: 2
               label_smoothing: 0.05 } }""",
    cvr="""num_class: 2
      losses { loss_type: JRC_LOSS jrc_loss { session_name: "user" alpha: 0.3
               same_label_loss: false loss_weight_strategy: "uncertainty" } }""",
)


def test_every_new_field_reads_converts_and_writes_back(tmp_path):
  from mmoe_jax.config import easyrec
  path = config_file(tmp_path, **EVERY_FIELD)
  config = load_config(path)
  ctr, cvr = config.model_config.dbmtl.task_towers
  assert (ctr.task_space_indicator_label, ctr.in_task_space_weight, ctr.out_task_space_weight,
          ctr.task_space_indicator_name, ctr.task_space_indicator_value, ctr.use_sample_weight,
          ctr.pareto_min_loss_weight) == ('clk', 2.0, 0.0, 'scene', 'home', False, 0.25)
  assert (ctr.losses[0].weight, ctr.losses[0].loss_name, ctr.losses[0].learn_loss_weight) == (
      0.5, 'ctr_ce', True)
  focal = ctr.losses[1].binary_focal_loss
  assert (focal.gamma, focal.alpha, focal.ohem_ratio, focal.label_smoothing) == (1.5, .25, .5, .1)
  assert ctr.losses[3].pairwise_focal_loss.hinge_margin == 0.5
  from mmoe_jax.config import complete, schema
  assert 'alpha' not in complete({}, schema.BINARY_FOCAL_LOSS)  # optional: absent unless set
  assert ctr.losses[4].pairwise_logistic_loss.use_label_margin
  assert cvr.losses[0].jrc_loss.loss_weight_strategy == 'uncertainty'
  assert config.data_config.sample_weight == 'w'
  assert config.model_config.loss_weight_strategy == 'Uncertainty'
  converted = tmp_path / 'converted.py'
  converted.write_text(easyrec.to_python(path))
  assert load_config(str(converted)).to_dict() == config.to_dict()
  written = tmp_path / 'written.config'
  written.write_text(easyrec.to_text(config))
  assert load_config(str(written)).to_dict() == config.to_dict()


def test_a_towers_losses_give_it_their_head(tmp_path):
  """The tower's outputs follow its losses (EasyRec ignores loss_type then); a type whose
  own head is not built (SIGMOID_L2_LOSS, until loss_types.py brings it) is an error."""
  from mmoe_jax.config.validate import LOSS_TYPES
  config = load(tmp_path, cvr='loss_type: L2_LOSS losses { loss_type: CLASSIFICATION }')
  assert config.model_config.dbmtl.task_towers[1].loss_type == 'CLASSIFICATION'
  cvr = 'losses { loss_type: SIGMOID_L2_LOSS }'
  if 'SIGMOID_L2_LOSS' in LOSS_TYPES:
    assert load(tmp_path, cvr=cvr).model_config.dbmtl.task_towers[1].loss_type == (
        'SIGMOID_L2_LOSS')
  else:
    with pytest.raises(ConfigError, match=r'task_towers\[1\]\.losses\[0\]\.loss_type: '
                       'SIGMOID_L2_LOSS needs its own output head'):
      load(tmp_path, cvr=cvr)



# -- sessions (pairwise and JRC losses) --

SESSION = 'losses { loss_type: CLASSIFICATION } losses { loss_type: PAIR_WISE_LOSS ' \
          'pairwise_loss { session_name: "user" } }'


def test_session_ids_are_read_from_the_raw_column(tmp_path):
  from mmoe_jax import data as data_lib
  from mmoe_jax.data import signals
  config = load(tmp_path, ctr=SESSION)
  columns = data_lib.load(config.train_input_path, config)
  ids = np.asarray(columns.labels[signals.session_key('user')])
  users = [line.split(',')[2] for line in open(config.train_input_path)]
  assert ids.dtype == np.int32 and len(ids) == len(users) == ROWS
  same_user = np.equal.outer(users, users)
  np.testing.assert_array_equal(np.equal.outer(ids, ids), same_user)


def test_file_shard_sessions_are_coded_over_every_process(tmp_path):
  """file_shard: a global batch holds every process's rows, each process having coded the
  sessions of its own files; merge_sessions recodes them over every process's distinct raw
  values, so that over both processes' rows equal values are one session and different
  values never, as with one process (an INT field's values compared as integers, an empty
  cell read as 0). Two processes are simulated: `gather` hands each the pairs of both."""
  import pyarrow as pa
  from mmoe_jax.data import groups, signals
  from mmoe_jax.data.columnar import ColumnarData
  config = load(tmp_path, ctr=SESSION)
  key = signals.session_key('user')
  for input_type, cells, value in (
      ('STRING', [['u7', 'u1', 'u7', ''], ['u2', 'u7', '', 'u3']], str),
      ('INT64', [['7', '1', '007', ''], ['2', '7', '0', '3']], lambda v: int(v or 0))):
    config.data_config.input_fields[2].input_type = input_type  # the field 'user'
    local = [signals.attach(ColumnarData({}, {}, len(c), 0), f'p{p}.csv', config,
                            ([f'p{p}.csv'], {'user': pa.chunked_array([pa.array(c, pa.binary())])}),
                            log=lambda _: None) for p, c in enumerate(cells)]
    pairs = [groups.value_bytes(part.group_values[key]) for part in local]
    ids = np.concatenate([signals.merge_sessions(part, lambda *_: pairs, p).labels[key]
                          for p, part in enumerate(local)])
    keys = [value(v) for c in cells for v in c]
    assert ids.dtype == np.int32
    np.testing.assert_array_equal(np.equal.outer(ids, ids), np.equal.outer(keys, keys),
                                  err_msg=input_type)
    # Each process's own ids would merge 'u1' (process 0) with 'u7' (process 1) and so on.
    own = np.concatenate([part.labels[key] for part in local])
    assert (np.equal.outer(own, own) != np.equal.outer(keys, keys)).any()


def test_a_pairwise_loss_gets_the_sessions_and_the_weights(tmp_path):
  """PAIR_WISE_LOSS (mtl.md 7): pairs (i, j) of one session with y_i > y_j, softplus(z_j -
  z_i), nzmean with the higher sample's weight; here with sample weights."""
  from mmoe_jax.data import signals
  plan = losses.LossPlan.of(load(tmp_path, ctr=SESSION, data='sample_weight: "w"'))
  z = np.array([2.0, -1.0, 0.5, 0.3, 1.0])
  y = np.array([1.0, 0.0, 0.0, 1.0, 0.0])
  w = np.array([1.0, 2.0, 0.5, 3.0, 1.0])
  session = np.array([0, 0, 1, 1, 0], np.int32)
  labels = {'clk': jnp.asarray(y), 'buy': jnp.zeros(5), signals.SAMPLE_WEIGHT: jnp.asarray(w),
            signals.session_key('user'): jnp.asarray(session)}
  values, _ = losses.task_losses({'ctr': jnp.asarray(z), 'cvr': jnp.zeros(5)}, labels, plan)
  pairs = [(i, j) for i in range(5) for j in range(5)
           if y[i] > y[j] and session[i] == session[j]]
  want = sum(w[i] * np.log1p(np.exp(-(z[i] - z[j]))) for i, j in pairs) / len(pairs)
  np.testing.assert_allclose(values['pair_wise_loss_ctr'], want, rtol=1e-5)
