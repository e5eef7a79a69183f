"""Exact AUC and regression metrics."""

import numpy as np
import pytest

from mmoe_jax.config import complete, schema
from mmoe_jax.metrics import (accuracy, auc, mean_absolute_error, mean_squared_error,
                              tower_metrics)


def brute_force_auc(labels, scores):
  pos, neg = scores[labels == 1], scores[labels == 0]
  wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
  return wins / (len(pos) * len(neg))


@pytest.mark.parametrize('seed', range(5))
def test_auc_equals_pair_count_with_ties(seed):
  rng = np.random.default_rng(seed)
  labels = (rng.random(400) < 0.3).astype(int)
  scores = rng.integers(0, 20, 400) + 3 * labels * rng.random(400)  # many ties
  assert auc(labels, scores) == pytest.approx(brute_force_auc(labels, scores), abs=1e-12)


def test_auc_edge_cases():
  assert auc([0, 1], [0.1, 0.9]) == 1.0
  assert auc([1, 0], [0.1, 0.9]) == 0.0
  assert auc([0, 1, 0, 1], [0.5] * 4) == 0.5
  assert np.isnan(auc([1, 1], [0.2, 0.3]))


def test_tower_metrics_names_and_values():
  tower = complete(dict(tower_name='gmv', label_name='y', loss_type='L2_LOSS',
                        metrics_set=({'mean_squared_error': {}}, {'mean_absolute_error': {}})),
                   schema.TASK_TOWER)
  out = tower_metrics(tower, {'y_gmv': np.array([1.0, 2.0, 4.0])},
                      {'y': np.array([1.0, 1.0, 1.0])})
  assert out == pytest.approx({'mean_squared_error_gmv': 10 / 3, 'mean_absolute_error_gmv': 4 / 3})
  binary = complete(dict(tower_name='ctr', label_name='clk', metrics_set=({'auc': {}},)),
                    schema.TASK_TOWER)
  out = tower_metrics(binary, {'probs_ctr': np.array([0.9, 0.1, 0.8])},
                      {'clk': np.array([1, 0, 0])})
  assert out == {'auc_ctr': 1.0}


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_non_finite_scores_give_nan(bad):
  # A diverged model must not report a plausible number: sorting would rank NaN last and
  # give about 0.5.
  labels = np.array([0, 1, 0, 1, 1, 0])
  scores = np.array([0.1, 0.9, 0.2, 0.8, bad, 0.3])
  assert np.isnan(auc(labels, scores))
  assert np.isnan(auc(labels, np.full(6, np.nan)))
  # NaN stays NaN; an infinite prediction gives an infinite error.
  assert not np.isfinite(mean_squared_error(labels, scores))
  assert not np.isfinite(mean_absolute_error(labels, scores))
  assert np.isnan(mean_squared_error(labels, np.where(np.isinf(scores), np.nan, scores)))
  assert np.isnan(accuracy(labels, np.stack([1 - scores, scores], axis=1)))


def test_tower_metrics_nan_in_nan_out():
  tower = complete(dict(tower_name='ctr', label_name='clk', metrics_set=(
      {'auc': {}}, {'mean_squared_error': {}}, {'mean_absolute_error': {}})), schema.TASK_TOWER)
  out = tower_metrics(tower, {'probs_ctr': np.array([0.9, np.nan, 0.8])},
                      {'clk': np.array([1, 0, 0])})
  assert set(out) == {'auc_ctr', 'mean_squared_error_ctr', 'mean_absolute_error_ctr'}
  assert all(np.isnan(v) for v in out.values())


def test_two_class_tower_auc_reads_class_one_and_accuracy_the_argmax():
  # EasyRec: auc on a num_class 2 tower uses probs[:, 1]; accuracy compares y (argmax).
  tower = complete(dict(tower_name='c', label_name='y', num_class=2,
                        metrics_set=({'auc': {}}, {'accuracy': {}})), schema.TASK_TOWER)
  probs = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9]])
  labels = np.array([0, 1, 1, 0])
  out = tower_metrics(tower, {'probs_c': probs, 'probs_c_1': probs[:, 1],
                              'y_c': probs.argmax(1)}, {'y': labels})
  # Positives (0.7, 0.4) vs negatives (0.2, 0.9): pairs won 0.7>0.2, 0.4>0.2 -> 2 of 4.
  # Argmax classes 0, 1, 0, 1 match labels 0, 1, 1, 0 in rows 0 and 1 -> 2 of 4.
  assert out == {'auc_c': 0.5, 'accuracy_c': 0.5}
  three = complete(dict(tower_name='c', label_name='y', num_class=3,
                        metrics_set=({'accuracy': {}},)), schema.TASK_TOWER)
  probs3 = np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1]])
  assert tower_metrics(three, {'probs_c': probs3}, {'y': np.array([2, 1, 1])}) == {
      'accuracy_c': pytest.approx(2 / 3)}
