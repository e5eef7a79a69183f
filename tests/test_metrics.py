"""Exact AUC and regression metrics."""

import numpy as np
import pytest

from mmoe_jax.config import complete, schema
from mmoe_jax.metrics import auc, tower_metrics


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
