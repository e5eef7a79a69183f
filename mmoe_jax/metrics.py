"""Evaluation metrics, computed exactly over the whole eval set on the host.

Names follow EasyRec: <metric>_<tower_name>, e.g. auc_ctr. A non-finite prediction makes
its metric non-finite (NaN in, NaN out): a diverged model never reports a plausible number.
"""

import types

import numpy as np

from mmoe_jax.config.validate import L2_TYPES


def auc(labels, scores):
  """Exact ROC AUC: the probability that a positive outranks a negative (ties count 1/2).

  Computed from average ranks (Mann-Whitney U) in O(n log n); NaN if either class is
  absent or any score is NaN or infinite (a sort would rank NaN last and hide it).
  """
  labels = np.asarray(labels) > 0.5
  scores = np.asarray(scores, dtype=np.float64)
  n_pos = int(labels.sum())
  n_neg = labels.size - n_pos
  if n_pos == 0 or n_neg == 0 or not np.isfinite(scores).all():
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


def mean_squared_error(labels, values):
  """mean((value - label)^2); NaN if any value is NaN, inf if any is infinite."""
  return float(np.mean((np.asarray(values, np.float64) - np.asarray(labels, np.float64)) ** 2))


def mean_absolute_error(labels, values):
  """mean(|value - label|); NaN if any value is NaN, inf if any is infinite."""
  return float(np.mean(np.abs(np.asarray(values, np.float64) - np.asarray(labels, np.float64))))


def accuracy(labels, probs):
  """Share of rows whose most probable class (the argmax of probs [N, C], which is y_<tower>)
  equals the label: EasyRec's accuracy, for CLASSIFICATION towers with num_class > 1. NaN if
  any probability is (an argmax would pick a class for NaN rows)."""
  probs = np.asarray(probs, np.float64)
  if not np.isfinite(probs).all():
    return float('nan')
  return float(np.mean(np.argmax(probs, axis=-1) == np.asarray(labels)))


def tower_metrics(tower, predictions, labels):
  """The metrics named in a tower's metrics_set. `predictions` uses EasyRec's keys.

  As EasyRec (rank_model.py `_build_metric_impl`): auc reads probs_<t> (num_class 1, and
  JRC_LOSS's, already of class 1) or the class-1 column probs_<t>_1 of a num_class 2
  CLASSIFICATION tower; mean_squared_error / mean_absolute_error read y_<t> for the L2 types
  (L2_LOSS, SIGMOID_L2_LOSS) and probs_<t> for the others (config validation refuses them on
  num_class > 1); accuracy compares the argmax of probs_<t> (y_<t>).
  """
  t = tower.tower_name
  label = np.asarray(labels[tower.label_name], dtype=np.float64)
  value = predictions[f'y_{t}' if tower.loss_type in L2_TYPES else f'probs_{t}']
  out = {}
  for metric in tower.metrics_set:
    if 'auc' in metric:
      multiclass = tower.num_class == 2 and tower.loss_type == 'CLASSIFICATION'
      out[f'auc_{t}'] = auc(label, predictions[f'probs_{t}_1' if multiclass else f'probs_{t}'])
    elif 'mean_squared_error' in metric:
      out[f'mean_squared_error_{t}'] = mean_squared_error(label, value)
    elif 'mean_absolute_error' in metric:
      out[f'mean_absolute_error_{t}'] = mean_absolute_error(label, value)
    elif 'accuracy' in metric:
      out[f'accuracy_{t}'] = accuracy(label, value)
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
    tower = types.SimpleNamespace(tower_name=name, label_name=name, metrics_set=cvr.metrics_set,
                                  loss_type=cvr.loss_type, num_class=cvr.num_class)
    out.update(tower_metrics(tower, preds, {name: label}))
  out.update(tower_metrics(ctr, predictions, labels))
  return out
