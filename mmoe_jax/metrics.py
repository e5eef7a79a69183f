"""Evaluation metrics, computed exactly over the whole eval set on the host.

Names follow EasyRec: <metric>_<tower_name>, e.g. auc_ctr.
"""

import types

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


def esmm_metrics(cvr, ctr, predictions, labels):
  """EasyRec's ESMM metrics (model/esmm.py): for each metric of the cvr tower, <metric>_ctcvr
  (label y_cvr * y_ctr, prediction probs_ctcvr or y_ctcvr) and <metric>_<cvr>_masked (the
  cvr prediction on the clicked rows, y_ctr > 0, only); the ctr tower's as any tower's.
  There is no metric of the cvr tower on all rows.
  """
  y_ctr = np.asarray(labels[ctr.label_name])
  y_cvr = np.asarray(labels[cvr.label_name])
  clicked = y_ctr > 0
  kind = 'y' if cvr.loss_type == 'L2_LOSS' else 'probs'
  masked = f'{cvr.tower_name}_masked'
  views = {
      'ctcvr': ({f'{kind}_ctcvr': predictions[f'{kind}_ctcvr']}, y_cvr * y_ctr),
      masked: ({f'{kind}_{masked}': np.asarray(predictions[f'{kind}_{cvr.tower_name}'])[clicked]},
               y_cvr[clicked]),
  }
  out = {}
  for name, (preds, label) in views.items():
    tower = types.SimpleNamespace(tower_name=name, label_name=name, metrics_set=cvr.metrics_set)
    out.update(tower_metrics(tower, preds, {name: label}))
  out.update(tower_metrics(ctr, predictions, labels))
  return out
