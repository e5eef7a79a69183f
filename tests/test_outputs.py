"""EasyRec's prediction outputs (rank_model.py `_output_to_prediction_impl`) and the
prediction CSV, for binary, regression and multi-class towers."""

import csv

import jax.numpy as jnp
import numpy as np

from mmoe_jax.models import predictions
from mmoe_jax.models.mmoe import TowerSpec
from mmoe_jax.training.evaluation import write_predictions


def softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_multiclass_tower_outputs_match_easyrec():
  z = np.array([[0.0, 1.0, 3.0], [2.0, 0.5, 0.0]], np.float32)
  out = predictions({'cls': jnp.asarray(z)}, (TowerSpec('cls', num_class=3),))
  p = softmax(z.astype(np.float64))
  assert set(out) == {'logits_cls', 'probs_cls', 'logits_cls_1', 'probs_cls_1', 'logits_cls_y',
                      'probs_cls_y', 'y_cls'}
  np.testing.assert_allclose(out['logits_cls'], z)
  np.testing.assert_allclose(out['probs_cls'], p, rtol=1e-6)
  np.testing.assert_allclose(out['logits_cls_1'], [1.0, 0.5])  # column 1
  np.testing.assert_allclose(out['probs_cls_1'], p[:, 1], rtol=1e-6)
  np.testing.assert_allclose(out['logits_cls_y'], [3.0, 2.0])  # row max
  np.testing.assert_allclose(out['probs_cls_y'], p.max(1), rtol=1e-6)
  np.testing.assert_array_equal(out['y_cls'], [2, 0])  # argmax


def test_prediction_csv_columns(tmp_path):
  towers = (TowerSpec('ctr'), TowerSpec('gmv', loss_type='L2_LOSS'),
            TowerSpec('cls', num_class=2))
  logits = {'ctr': jnp.array([0.0, 2.0]), 'gmv': jnp.array([1.5, -1.0]),
            'cls': jnp.array([[0.0, 1.0], [3.0, 0.0]])}
  path = tmp_path / 'out' / 'pred.csv'
  write_predictions({k: np.asarray(v) for k, v in predictions(logits, towers).items()}, path)
  with open(path) as f:
    rows = list(csv.DictReader(f))
  # probs_cls_1 (EasyRec's class-1 output) is the class-1 column of probs_cls: written once.
  assert sorted(rows[0]) == ['probs_cls_0', 'probs_cls_1', 'probs_cls_y', 'probs_ctr', 'y_cls',
                             'y_gmv']
  p = softmax(np.array([[0.0, 1.0], [3.0, 0.0]]))
  np.testing.assert_allclose([float(r['probs_cls_1']) for r in rows], p[:, 1], rtol=1e-6)
  np.testing.assert_allclose([float(r['probs_cls_y']) for r in rows], p.max(1), rtol=1e-6)
  assert [r['y_cls'] for r in rows] == ['1', '0']
  np.testing.assert_allclose([float(r['probs_ctr']) for r in rows], [0.5, 1 / (1 + np.exp(-2))],
                             rtol=1e-6)
