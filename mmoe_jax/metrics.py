"""Evaluation metrics, computed exactly over the whole eval set on the host.

Names follow EasyRec: <metric>_<tower_name>, e.g. auc_ctr. A non-finite prediction makes
its metric non-finite (NaN in, NaN out): a diverged model never reports a plausible number.
"""

import types

import numpy as np


# The loss types whose prediction is y_<t> (mean_squared_error reads it); the others' is probs_<t>.
L2_TYPES = ('L2_LOSS', 'SIGMOID_L2_LOSS')
# metric -> its field naming the input field it groups rows by
GROUP_FIELDS = {'gauc': 'uid_field', 'session_auc': 'session_id_field'}


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


def root_mean_squared_error(labels, values):
  """sqrt(mean((value - label)^2)); NaN if any value is NaN, inf if any is infinite."""
  return float(np.sqrt(mean_squared_error(labels, values)))


def grouped_auc(labels, scores, groups, reduction='mean'):
  """EasyRec's gauc / session_auc: the ROC AUC within each group of rows, averaged.

  Exact per group (ties count 1/2, as sklearn's roc_auc_score). Groups whose labels are all
  0 or all 1 (single-row groups included) are skipped; the others are averaged with weight
  1 ('mean'), their row count ('mean_by_sample_num') or their positive count
  ('mean_by_positive_num'). 0.0 if no group qualifies (EasyRec), NaN if any score is not
  finite. `groups` holds each row's group: an integer code (data/groups.py gives dense
  int32 codes of the raw values) or any value np.unique sorts, e.g. strings.

  Vectorised, O(n log n): one sort by (group, score); each run of tied scores within a
  group gets its average rank, and per-group rank sums of the positives (Mann-Whitney U)
  come from np.bincount.
  """
  labels = np.asarray(labels) > 0.5
  scores = np.asarray(scores, dtype=np.float64)
  groups = np.asarray(groups)
  if groups.dtype.kind not in 'iu':
    groups = np.unique(groups, return_inverse=True)[1]
  if not np.isfinite(scores).all():
    return float('nan')
  if not scores.size:
    return 0.0
  order = np.lexsort((scores, groups))
  g, s, y = groups[order], scores[order], labels[order]
  group_start = np.r_[True, g[1:] != g[:-1]]
  run_start = group_start | np.r_[True, s[1:] != s[:-1]]  # a run of tied scores in a group
  group_id = np.cumsum(group_start) - 1
  starts = np.flatnonzero(run_start)
  lengths = np.diff(np.r_[starts, s.size])
  # 1-based average rank of each run within its group.
  first_of_group = np.flatnonzero(group_start)
  position = starts - first_of_group[group_id[starts]]
  ranks = np.repeat(position + (lengths + 1) / 2.0, lengths)
  size = np.bincount(group_id)
  n_pos = np.bincount(group_id, weights=y, minlength=size.size)
  rank_sum = np.bincount(group_id, weights=ranks * y, minlength=size.size)
  n_neg = size - n_pos
  ok = (n_pos > 0) & (n_neg > 0)
  if not ok.any():
    return 0.0
  group_auc = (rank_sum[ok] - n_pos[ok] * (n_pos[ok] + 1) / 2) / (n_pos[ok] * n_neg[ok])
  weight = {'mean': np.ones(size.size), 'mean_by_sample_num': size,
            'mean_by_positive_num': n_pos}[reduction][ok]
  return float(np.average(group_auc, weights=weight))


# EasyRec's max_f1 thresholds: -1e-7, (i + 1) / 199 for i in 0..197, 1 + 1e-7 (float32, as
# TF compares them with float32 predictions).
MAX_F1_THRESHOLDS = np.float32([-1e-7] + [(i + 1) / 199 for i in range(198)] + [1 + 1e-7])


def max_f1(labels, probs):
  """EasyRec's max_f1: the largest F1 = 2PR / (P + R + 1e-12) of `probs > t` over its 200
  thresholds, precision and recall 0 where undefined (TF's streaming metrics).

  EasyRec passes logits here, so its thresholds cover probabilities 0.5..0.73 only; this
  takes probabilities (docs/metrics.md). NaN if any probability is.
  """
  labels = np.asarray(labels) > 0.5
  probs = np.asarray(probs, np.float32)
  if np.isnan(probs).any():
    return float('nan')
  order = np.argsort(probs, kind='stable')
  sorted_probs = probs[order]
  # predicted positive at threshold t: the rows above it, the tail of the ascending sort
  above = probs.size - np.searchsorted(sorted_probs, MAX_F1_THRESHOLDS, side='right')
  tail_pos = np.r_[0, np.cumsum(labels[order][::-1])]  # positives among the top k rows
  tp = tail_pos[above].astype(np.float64)
  precision = np.divide(tp, above, out=np.zeros_like(tp), where=above > 0)
  n_pos = labels.sum()
  recall = tp / n_pos if n_pos else np.zeros_like(tp)
  return float(np.max(2 * precision * recall / (precision + recall + 1e-12)))


def recall_at_topk(labels, logits, topk=5):
  """EasyRec's recall_at_topk for a multi-class tower: the share of rows whose label is
  among the `topk` largest logits (tf.nn.top_k: equal logits rank the lower class first).
  NaN if any logit is."""
  logits = np.asarray(logits, np.float64)
  labels = np.asarray(labels).astype(np.int64)
  if np.isnan(logits).any():
    return float('nan')
  true = np.take_along_axis(logits, labels[:, None], axis=1)
  classes = np.arange(logits.shape[1])
  ahead = (logits > true) | ((logits == true) & (classes < labels[:, None]))
  return float(np.mean(ahead.sum(axis=1) < topk))


# Probabilities are clipped to [eps, 1 - eps] in log loss: a float32 probability of exactly
# 0 or 1 would otherwise give an infinite loss.
LOG_LOSS_EPS = 1e-7


def log_loss(labels, probs):
  """Mean binary cross entropy -(y log p + (1 - y) log(1 - p)), p clipped to [1e-7, 1 - 1e-7];
  NaN if any probability is."""
  y = np.asarray(labels, np.float64)
  p = np.clip(np.asarray(probs, np.float64), LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
  return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def normalized_entropy(labels, probs):
  """log_loss / the entropy of the eval positive rate r, -(r log r + (1 - r) log(1 - r)):
  below 1 when the model beats always predicting r. NaN if r is 0 or 1."""
  rate = float(np.mean(np.asarray(labels, np.float64)))
  if not 0 < rate < 1:
    return float('nan')
  return log_loss(labels, probs) / -(rate * np.log(rate) + (1 - rate) * np.log1p(-rate))


def calibration(labels, probs):
  """mean(prediction) / mean(label): 1 when the predicted and observed rates agree. NaN
  without positives."""
  rate = float(np.mean(np.asarray(labels, np.float64)))
  return float(np.mean(np.asarray(probs, np.float64)) / rate) if rate > 0 else float('nan')


def binary_score(tower, predictions):
  """A binary tower's probability of class 1: probs_<t>, or probs_<t>_1 of a num_class 2
  CLASSIFICATION tower (JRC_LOSS's probs_<t> is already class 1's)."""
  t = tower.tower_name
  two_class = tower.num_class == 2 and tower.loss_type == 'CLASSIFICATION'
  return predictions[f'probs_{t}_1' if two_class else f'probs_{t}']


def tower_metrics(tower, predictions, labels, groups=None):
  """The metrics named in a tower's metrics_set, named <metric>_<tower>. `predictions` uses
  EasyRec's keys; `groups` maps an input field to its integer group code per row (the raw
  values, dense-coded: data/groups.py), for gauc and session_auc.

  As EasyRec (rank_model.py `_build_metric_impl`): auc, gauc, session_auc and max_f1 read
  probs_<t> (num_class 1) or its class-1 column probs_<t>_1 (num_class 2);
  mean_squared_error / mean_absolute_error / root_mean_squared_error read y_<t> for L2_LOSS
  and probs_<t> for a num_class 1 CLASSIFICATION tower (config validation refuses them on
  num_class > 1); accuracy compares the argmax of probs_<t> (y_<t>); recall_at_topk ranks
  logits_<t>. max_f1 reads probabilities, where EasyRec reads logits (docs/metrics.md).
  """
  t = tower.tower_name
  label = np.asarray(labels[tower.label_name], dtype=np.float64)
  value = f'y_{t}' if tower.loss_type in L2_TYPES else f'probs_{t}'
  errors = {'mean_squared_error': mean_squared_error,
            'mean_absolute_error': mean_absolute_error,
            'root_mean_squared_error': root_mean_squared_error}
  out = {}
  for metric in tower.metrics_set:
    if 'auc' in metric:
      out[f'auc_{t}'] = auc(label, binary_score(tower, predictions))
    elif 'accuracy' in metric:
      out[f'accuracy_{t}'] = accuracy(label, predictions[value])
    elif 'max_f1' in metric:
      out[f'max_f1_{t}'] = max_f1(label, binary_score(tower, predictions))
    elif 'recall_at_topk' in metric:
      out[f'recall_at_topk_{t}'] = recall_at_topk(label, predictions[f'logits_{t}'],
                                                  metric.recall_at_topk.topk)
    elif 'gauc' in metric or 'session_auc' in metric:
      kind = 'gauc' if 'gauc' in metric else 'session_auc'
      field = metric[kind][GROUP_FIELDS[kind]]
      if groups is None or field not in groups:
        raise ValueError(f'{kind}_{t}: the eval data carries no group codes for input field '
                         f'{field!r} (load the rows with data.load(..., groups=True))')
      out[f'{kind}_{t}'] = grouped_auc(label, binary_score(tower, predictions), groups[field],
                                       metric[kind].reduction)
    else:
      name, = (k for k in errors if k in metric)
      out[f'{name}_{t}'] = errors[name](label, predictions[value])
  return out


def probability_metrics(tower, predictions, labels):
  """Not configured, not in EasyRec: logloss_<t>, normalized_entropy_<t> and calibration_<t>
  of a binary CLASSIFICATION tower (num_class 1 or 2) on its class-1 probability; {} for
  other towers."""
  if tower.loss_type != 'CLASSIFICATION' or tower.num_class > 2:
    return {}
  t = tower.tower_name
  label, probs = np.asarray(labels[tower.label_name]), binary_score(tower, predictions)
  return {f'logloss_{t}': log_loss(label, probs),
          f'normalized_entropy_{t}': normalized_entropy(label, probs),
          f'calibration_{t}': calibration(label, probs)}


def esmm_views(cvr, ctr, predictions, labels, groups=None):
  """EasyRec's ESMM metric targets (model/esmm.py), each as (tower, predictions, labels,
  groups) for tower_metrics: ctcvr (label y_cvr * y_ctr, prediction probs_ctcvr or
  y_ctcvr) and <cvr>_masked (the cvr prediction on the clicked rows, y_ctr > 0, only), both
  with the cvr tower's metrics_set; the ctr tower as any tower. There is no metric of the
  cvr tower on all rows. Group codes are masked with the rows (EasyRec leaves them unmasked,
  misaligned: a bug, docs/metrics.md).
  """
  groups = groups or {}
  y_ctr = np.asarray(labels[ctr.label_name])
  y_cvr = np.asarray(labels[cvr.label_name])
  clicked = y_ctr > 0
  kind = 'y' if cvr.loss_type == 'L2_LOSS' else 'probs'
  masked = f'{cvr.tower_name}_masked'
  views = []
  for name, preds, label, rows in (
      ('ctcvr', predictions[f'{kind}_ctcvr'], y_cvr * y_ctr, slice(None)),
      (masked, np.asarray(predictions[f'{kind}_{cvr.tower_name}'])[clicked], y_cvr[clicked],
       clicked)):
    tower = types.SimpleNamespace(tower_name=name, label_name=name, metrics_set=cvr.metrics_set,
                                  loss_type=cvr.loss_type, num_class=cvr.num_class)
    views.append((tower, {f'{kind}_{name}': preds}, {name: label},
                  {k: np.asarray(v)[rows] for k, v in groups.items()}))
  views.append((ctr, predictions, labels, groups))
  return views


def esmm_metrics(cvr, ctr, predictions, labels, groups=None):
  """EasyRec's ESMM metrics: tower_metrics of each of esmm_views."""
  out = {}
  for view in esmm_views(cvr, ctr, predictions, labels, groups):
    out.update(tower_metrics(*view))
  return out
