"""Sample weights, task spaces, several losses per tower and loss weighting
(docs/training_signals.md), against numpy written from EasyRec's definitions
(../shared/reference/mtl.md 1.3, 5, 6, 7)."""

import logging

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
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
                     r'\.loss_type: mixes an L2_LOSS head'):
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
