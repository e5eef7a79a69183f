"""Evaluation metrics, computed exactly over the whole eval set on the host.

Names follow EasyRec: <metric>_<tower_name>, e.g. auc_ctr.
"""

import numpy as np


def auc(labels, scores):
  """Exact ROC AUC: the probability that a positive outranks a negative (ties count 1/2).

  Computed from average ranks (Mann-Whitney U) in O(n log n); NaN if either class is
  absent.
  """
  labels = np.asarray(labels) > 0.5
  scores = np.asarray(scores, dtype=np.float64)
  n_pos = int(labels.sum())
  n_neg = labels.size - n_pos
  if n_pos == 0 or n_neg == 0:
    return float('nan')
  order = np.argsort(scores, kind='mergesort')
  sorted_scores = scores[order]
  # Average 1-based rank of each run of tied scores.
  starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
  ends = np.r_[starts[1:], scores.size]
  run_rank = (starts + ends + 1) / 2.0
  ranks = np.empty(scores.size)
  ranks[order] = np.repeat(run_rank, ends - starts)
  return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def tower_metrics(tower, predictions, labels):
  """The metrics named in a tower's metrics_set. `predictions` uses EasyRec's keys."""
  t = tower.tower_name
  label = np.asarray(labels[tower.label_name], dtype=np.float64)
  # MAE/MSE read probs_ for a binary tower and y_ for regression (EasyRec).
  value = predictions.get(f'y_{t}', predictions.get(f'probs_{t}'))
  out = {}
  for metric in tower.metrics_set:
    if 'auc' in metric:
      probs = np.asarray(predictions[f'probs_{t}'])
      out[f'auc_{t}'] = auc(label, probs if probs.ndim == 1 else probs[:, 1])
    elif 'mean_squared_error' in metric:
      out[f'mean_squared_error_{t}'] = float(np.mean((np.asarray(value) - label) ** 2))
    elif 'mean_absolute_error' in metric:
      out[f'mean_absolute_error_{t}'] = float(np.mean(np.abs(np.asarray(value) - label)))
  return out
