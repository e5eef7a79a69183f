"""EasyRec's gauc, session_auc, recall_at_topk, max_f1, rmse, and the probability metrics
(log loss, normalized entropy, calibration), against loops written from their definitions."""

import csv
import json
import os

import numpy as np
import pytest

from mmoe_jax import data as data_lib
from mmoe_jax import metrics
from mmoe_jax.config import ConfigError, complete, load_config, schema, validate

REDUCTIONS = ('mean', 'mean_by_sample_num', 'mean_by_positive_num')


def pair_auc(labels, scores):
  """P(a positive outscores a negative), ties 1/2, over all pairs."""
  pos, neg = scores[labels == 1], scores[labels == 0]
  wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
  return wins / (len(pos) * len(neg))


def loop_gauc(labels, scores, uids, reduction):
  """EasyRec's definition, one group at a time: single-class groups skipped, weights 1, the
  group's rows or its positives; 0.0 without a qualifying group."""
  aucs, weights = [], []
  for uid in dict.fromkeys(uids.tolist()):
    rows = uids == uid
    y = labels[rows]
    if y.all() or not y.any():
      continue
    aucs.append(pair_auc(y, scores[rows]))
    weights.append({'mean': 1, 'mean_by_sample_num': rows.sum(),
                    'mean_by_positive_num': y.sum()}[reduction])
  return sum(a * w for a, w in zip(aucs, weights)) / sum(weights) if aucs else 0.0


@pytest.mark.parametrize('reduction', REDUCTIONS)
@pytest.mark.parametrize('seed', range(3))
def test_gauc_equals_the_per_user_loop_with_ties(seed, reduction):
  rng = np.random.default_rng(seed)
  n = 600
  uids = rng.integers(0, 60, n) * 7 - 100  # sparse, negative codes too
  labels = (rng.random(n) < 0.3).astype(int)
  scores = rng.integers(0, 6, n) / 5 + 0.3 * labels * rng.random(n)  # many ties
  got = metrics.grouped_auc(labels, scores, uids, reduction)
  assert got == pytest.approx(loop_gauc(labels, scores, uids, reduction), abs=1e-12)


def test_gauc_skips_single_class_groups_and_weights_them():
  labels = np.array([1, 0, 0, 1, 1, 0, 1, 1, 0, 0, 0])
  scores = np.array([.9, .1, .5, .2, .4, .6, .3, .3, .3, .8, .7])
  uids = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3, 4, 4])
  # group 0: positive .9 beats .1 and .5 -> 1.0 (3 rows, 1 positive); group 1 (all
  # positive), group 2 (one row) and group 4 (all negative) are skipped; group 3: labels
  # 1, 1, 0 all scored .3 -> both pairs tied -> 0.5 (3 rows, 2 positives).
  assert metrics.grouped_auc(labels, scores, uids, 'mean') == pytest.approx(0.75)
  assert metrics.grouped_auc(labels, scores, uids, 'mean_by_sample_num') == pytest.approx(
      (1.0 * 3 + 0.5 * 3) / 6)
  assert metrics.grouped_auc(labels, scores, uids, 'mean_by_positive_num') == pytest.approx(
      (1.0 * 1 + 0.5 * 2) / 3)


def test_gauc_without_a_qualifying_group_is_zero_and_nan_scores_nan():
  labels, uids = np.array([1, 1, 0, 0, 1]), np.array([0, 0, 1, 1, 2])
  assert metrics.grouped_auc(labels, np.arange(5) / 5, uids) == 0.0
  assert metrics.grouped_auc([], [], []) == 0.0
  assert np.isnan(metrics.grouped_auc([0, 1], [np.nan, .3], [0, 0]))


def test_gauc_groups_by_string_value():
  labels = np.array([1, 0, 1, 0, 0, 1])
  scores = np.array([.8, .2, .1, .9, .4, .6])
  uids = np.array(['u1', 'u1', 'u10', 'u10', '', ''])
  assert metrics.grouped_auc(labels, scores, uids) == pytest.approx(
      loop_gauc(labels, scores, uids, 'mean'))  # (1 + 0 + 1) / 3


def tower(**fields):
  return complete(dict(tower_name='t', label_name='y', **fields), schema.TASK_TOWER)


def test_gauc_and_session_auc_read_their_field_and_class_one():
  t = tower(num_class=2, metrics_set=(
      {'gauc': {'uid_field': 'user', 'reduction': 'mean_by_sample_num'}},
      {'session_auc': {'session_id_field': 'session'}}))
  labels = np.array([1, 0, 1, 0])
  probs1 = np.array([.9, .1, .2, .8])
  groups = {'user': np.array([0, 0, 1, 1]), 'session': np.array([5, 5, 5, 5])}
  out = metrics.tower_metrics(t, {'probs_t_1': probs1}, {'y': labels}, groups)
  # user 0: .9 over .1 -> 1; user 1: .2 under .8 -> 0; one session: 3 of 4 pairs won.
  assert out == {'gauc_t': pytest.approx(0.5), 'session_auc_t': pytest.approx(0.75)}
  with pytest.raises(ValueError, match=r"gauc_t: .* no group codes for input field 'user'"):
    metrics.tower_metrics(t, {'probs_t_1': probs1}, {'y': labels}, {})


def loop_max_f1(labels, probs):
  """EasyRec's 200 thresholds; precision and recall 0 where their denominator is."""
  best = 0.0
  for thr in [-1e-7] + [(i + 1) / 199 for i in range(198)] + [1 + 1e-7]:
    pred = probs > np.float32(thr)
    tp = int((pred & (labels == 1)).sum())
    p = tp / pred.sum() if pred.sum() else 0.0
    r = tp / (labels == 1).sum() if (labels == 1).sum() else 0.0
    best = max(best, 2 * p * r / (p + r + 1e-12))
  return best


@pytest.mark.parametrize('seed', range(3))
def test_max_f1_equals_the_threshold_loop(seed):
  rng = np.random.default_rng(seed)
  labels = (rng.random(300) < 0.2).astype(int)
  probs = np.clip(rng.random(300) * 0.7 + 0.3 * labels, 0, 1).astype(np.float32)
  probs[:20] = np.float32(50 / 199)  # a threshold value itself: `>` leaves it out
  assert metrics.max_f1(labels, probs) == pytest.approx(loop_max_f1(labels, probs), abs=1e-12)


def test_max_f1_by_hand():
  # A threshold between .6 and .9 predicts {.9}: P = R = 1 when .9 is the positive. With .6
  # the positive, the best is a threshold between .1 and .6: {.9, .6}, P 1/2, R 1 -> 2/3.
  # Without positives precision and recall stay 0.
  assert metrics.max_f1([1, 0, 0, 0], [.9, .6, .1, .0]) == pytest.approx(1.0, abs=1e-9)
  assert metrics.max_f1([0, 1, 0, 0], [.9, .6, .1, .0]) == pytest.approx(2 / 3, abs=1e-9)
  assert metrics.max_f1([0, 0], [.3, .6]) == 0.0


def test_recall_at_topk_equals_the_rank_loop():
  rng = np.random.default_rng(0)
  logits = rng.integers(0, 4, (200, 6)).astype(float)  # many ties: lower class ranks first
  labels = rng.integers(0, 6, 200)
  for k in (1, 2, 5):
    hits = 0
    for row, y in zip(logits, labels):
      order = sorted(range(6), key=lambda c: (-row[c], c))  # tf.nn.top_k's order
      hits += y in order[:k]
    assert metrics.recall_at_topk(labels, logits, k) == pytest.approx(hits / 200)


def test_rmse_and_probability_metrics_from_their_formulas():
  labels = np.array([1, 0, 0, 1, 0])
  probs = np.array([.8, .3, .1, .4, 0.0])  # 0 is clipped to 1e-7 in the log loss
  assert metrics.root_mean_squared_error(labels, probs) == pytest.approx(
      np.sqrt((.2 ** 2 + .3 ** 2 + .1 ** 2 + .6 ** 2) / 5))
  loss = -(np.log(.8) + np.log(.7) + np.log(.9) + np.log(.4) + np.log(1 - 1e-7)) / 5
  rate = 2 / 5
  entropy = -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate))
  t = tower(metrics_set=({'root_mean_squared_error': {}},))
  out = metrics.tower_metrics(t, {'probs_t': probs}, {'y': labels})
  out.update(metrics.probability_metrics(t, {'probs_t': probs}, {'y': labels}))
  assert out == pytest.approx({
      'root_mean_squared_error_t': np.sqrt(0.5 / 5), 'logloss_t': loss,
      'normalized_entropy_t': loss / entropy, 'calibration_t': (1.6 / 5) / rate})
  assert np.isnan(metrics.normalized_entropy([0, 0], [.1, .2]))
  assert np.isnan(metrics.calibration([0, 0], [.1, .2]))
  assert metrics.probability_metrics(tower(loss_type='L2_LOSS'), {}, {}) == {}
  assert metrics.probability_metrics(tower(num_class=3), {}, {}) == {}


def test_esmm_masks_group_codes_with_the_clicked_rows():
  # EasyRec leaves the uid column unmasked (misaligned); here it follows the rows.
  cvr = tower(metrics_set=({'gauc': {'uid_field': 'u'}},))
  cvr.tower_name, cvr.label_name = 'cvr', 'buy'
  ctr = tower(metrics_set=({'auc': {}},))
  ctr.tower_name, ctr.label_name = 'ctr', 'clk'
  clk = np.array([1, 0, 1, 1, 1, 0])
  buy = np.array([1, 0, 0, 1, 0, 0])
  uids = np.array([0, 0, 0, 1, 1, 1])
  preds = dict(probs_cvr=np.array([.9, .5, .1, .2, .3, .7]), probs_ctr=np.full(6, .5),
               probs_ctcvr=np.array([.9, .5, .1, .2, .3, .7]))
  out = metrics.esmm_metrics(cvr, ctr, preds, dict(clk=clk, buy=buy), {'u': uids})
  clicked = clk > 0
  assert out['gauc_cvr_masked'] == pytest.approx(loop_gauc(
      buy[clicked], preds['probs_cvr'][clicked], uids[clicked], 'mean'))  # (1 + 0) / 2
  assert out['gauc_ctcvr'] == pytest.approx(loop_gauc(buy * clk, preds['probs_ctcvr'], uids,
                                                      'mean'))


TOWERS = """
task_towers {{ tower_name: "ctr" label_name: "clk" dnn {{ hidden_units: [4] }} {ctr} }}
task_towers {{ tower_name: "cvr" label_name: "buy" num_class: 3 dnn {{ hidden_units: [4] }}
               {cvr} }}
"""


@pytest.mark.parametrize('ctr, cvr, error', [
    ('metrics_set { gauc { uid_field: "user" reduction: "median" } }', '',
     r"task_towers\[0\].metrics_set\[0\].gauc.reduction: 'median' is not one of"),
    ('metrics_set { gauc { uid_field: "usr" } }', '',
     r"task_towers\[0\].metrics_set\[0\].gauc.uid_field: unknown input field 'usr'"),
    ('', 'metrics_set { session_auc { session_id_field: "user" } }',
     r'task_towers\[1\].metrics_set\[0\].session_auc: needs a tower of a binary loss '
     'type'),
    ('metrics_set { recall_at_topk {} }', '',
     r'task_towers\[0\].metrics_set\[0\].recall_at_topk: needs a CLASSIFICATION tower with '
     'num_class > 1'),
    ('', 'metrics_set { recall_at_topk { topk: 0 } }', r'recall_at_topk.topk: 0 must be >= 1'),
    ('', 'metrics_set { max_f1 {} }', r'max_f1: needs a tower of a binary loss type'),
    ('', 'metrics_set { root_mean_squared_error {} }', r'root_mean_squared_error: not defined'),
])
def test_metric_rules_name_the_field(tmp_path, ctr, cvr, error):
  from test_easyrec_config import pipeline
  path = pipeline(tmp_path, TOWERS=TOWERS.format(ctr=ctr, cvr=cvr),
                  DATA='input_fields { input_name: "session" input_type: INT64 }')
  with pytest.raises(ConfigError, match=error):
    validate(load_config(path))


def test_precision_and_recall_are_refused_not_ignored():
  for name in ('precision', 'recall'):
    with pytest.raises(ConfigError, match=f'metrics_set.0..{name}: unknown field'):
      complete({name: {}}, schema.EVAL_METRICS, 'metrics_set[0]')


def write_csv(path, rows):
  with open(path, 'w', newline='') as f:
    csv.writer(f).writerows(rows)


def test_group_codes_are_the_raw_values_lined_up_with_the_rows(tmp_path):
  from test_easyrec_config import pipeline
  towers = TOWERS.format(ctr='metrics_set { gauc { uid_field: "user" } }', cvr='')
  config = validate(load_config(pipeline(tmp_path, TOWERS=towers)))
  config.model_dir = str(tmp_path / 'model')
  # user ids that differ only in text ('7' vs '07', '' included) are different groups.
  users = ['7', '07', 'a', '', '7', 'a', '07', '']
  path = str(tmp_path / 'eval.csv')
  write_csv(path, [[i % 2, i % 3, u, '3'] for i, u in enumerate(users)])
  columns = data_lib.load(path, config, groups=True)
  codes = columns.groups['user']
  assert codes.dtype == np.int32
  assert [users.index(u) for u in users] == [codes.tolist().index(c) for c in codes]
  assert columns.take(np.array([4, 0])).groups['user'].tolist() == [codes[4], codes[0]]
  # A row dropped for a bad value (ignore_error) would shift the re-read column: refused.
  config.data_config.ignore_error = True
  write_csv(path, [[1, 0, 'u', '3'], ['oops', 0, 'v', '3'], [0, 1, 'w', '3']])
  os.utime(path, ns=(1, 1))  # a new cache key
  with pytest.raises(ValueError, match=r"input field 'user': .* has 3 rows .* 2 usable rows"):
    data_lib.load(path, config, groups=True)


def test_signal_and_group_columns_are_read_in_one_pass(tmp_path, monkeypatch):
  """A task-space mask (data/signals.py) and gauc's groups (data/groups.py) both come from
  raw columns read beside the cache: each file is read once for both, not once per module."""
  from collections import Counter
  from mmoe_jax.data import csv_input
  from test_easyrec_config import pipeline
  towers = TOWERS.format(ctr='metrics_set { gauc { uid_field: "user" } } '
                             'task_space_indicator_name: "item" task_space_indicator_value: "3"',
                         cvr='')
  config = load_config(pipeline(tmp_path, TOWERS=towers))
  paths = [str(tmp_path / f'{name}.csv') for name in ('train', 'eval1', 'eval2')]
  for i, path in enumerate(paths):
    write_csv(path, [[j % 2, j % 3, f'u{(i + j) % 3}', j % 4] for j in range(6)])
  config.update(model_dir=str(tmp_path / 'model'), train_input_path=paths[0],
                eval_input_path=','.join(paths[1:]))
  reads = Counter()
  real = csv_input.raw_columns

  def counted(path, data_config, columns):
    reads[path] += 1
    return real(path, data_config, columns)

  monkeypatch.setattr(csv_input, 'raw_columns', counted)
  _, eval_data, _ = data_lib.datasets(validate(config), log=lambda _: None)
  assert reads == Counter(paths)
  items, users = np.tile(np.arange(6) % 4, 2), [f'u{(i + j) % 3}' for i in (1, 2) for j in range(6)]
  np.testing.assert_array_equal(eval_data.labels['@item==3'], items == 3)
  codes = eval_data.groups['user'].tolist()
  assert [codes[users.index(u)] for u in users] == codes and len(set(codes)) == 3


def test_merged_codes_are_equal_exactly_where_the_raw_values_are():
  """file_shard: each process codes its own rows' values; the codes merged from every
  process's distinct values (as bytes) are equal across processes where the values are."""
  import pyarrow as pa
  import pyarrow.compute as pc
  from mmoe_jax.data import groups
  rows = [['7', '', 'a', '7'], ['a', '07', '', 'b', 'b'], []]  # three processes' raw values
  codes, values = [], []
  for raw in rows:
    coded = pc.dictionary_encode(pa.array(raw, pa.string()))
    codes.append(coded.indices.to_numpy(zero_copy_only=False).astype(np.int32))
    values.append(groups.value_bytes(coded.dictionary))
  every = [v for raw in rows for v in raw]
  codes = groups.merged_codes(codes, values).tolist()
  assert [codes[every.index(v)] for v in every] == codes and len(set(codes)) == 5


def test_gauc_of_a_tiny_mmoe_run_on_the_synthetic_data(tiny_config, monkeypatch, capsys):
  from mmoe_jax.config import task_towers
  from mmoe_jax.training import evaluation, train_lib
  from mmoe_jax.training.input_pipeline import BatchSampler
  tiny_config.train_config.num_steps = 2
  tiny_config.train_config.save_checkpoints_steps = 2
  tiny_config.train_config.log_step_count_steps = 2
  tiny_config.synthetic.train_rows = tiny_config.synthetic.eval_rows = 256
  tiny_config.data_config.eval_batch_size = 100
  ctr = tiny_config.model_config.mmoe.task_towers[0]
  ctr.metrics_set = (*ctr.metrics_set, {'gauc': {'uid_field': 'user_id'}})
  predicted = []  # (labels, predictions) of each predict_rows call
  real_predict = evaluation.predict_rows

  def spy(trainer, state, columns):
    predicted.append((dict(columns.labels), real_predict(trainer, state, columns)))
    return predicted[-1][1]

  monkeypatch.setattr(evaluation, 'predict_rows', spy)
  result = train_lib.train_and_evaluate(tiny_config)
  assert 0 < result['gauc_ctr'] < 1
  for name in ('logloss', 'normalized_entropy', 'calibration'):
    assert np.isfinite(result[f'{name}_ctr']) and np.isfinite(result[f'{name}_cvr'])
  with open(os.path.join(tiny_config.model_dir, 'metrics.jsonl')) as f:
    assert json.loads(f.readline())['gauc_ctr'] == result['gauc_ctr']

  config = validate(tiny_config)
  train_data, eval_data, _ = data_lib.datasets(config, log=lambda _: None)
  # The step-2 log line's train AUC: the last 100 rows (one eval batch) of the 2 x 64 rows
  # trained on, predicted with the step-2 parameters (the first prediction of the run).
  batches = [BatchSampler(256, 64, config.seed, config.data_config.shuffle).indices(s)
             for s in range(2)]
  rows = np.concatenate(batches)[-100:]
  labels, predictions = predicted[0]
  line = next(l for l in capsys.readouterr().err.split('\n') if 'step 2: ' in l)
  for tower in task_towers(config.model_config):
    np.testing.assert_array_equal(labels[tower.label_name],
                                  train_data.labels[tower.label_name][rows])
    want = metrics.auc(labels[tower.label_name], predictions[f'probs_{tower.tower_name}'])
    assert f'auc_{tower.tower_name}={want:.5g}' in line

  # The eval rows carry the codes of the raw user_id column, row for row.
  eval_path = data_lib.input_paths(config)[1]
  with open(eval_path) as f:
    names = [field.input_name for field in config.data_config.input_fields]
    lines = list(csv.reader(f, delimiter=config.data_config.separator))
  users = [row[names.index('user_id')] for row in lines[config.data_config.with_header:]]
  codes = eval_data.groups['user_id']
  first = {}
  assert [first.setdefault(u, c) for u, c in zip(users, codes)] == codes.tolist()
  assert len(first) == len(set(codes.tolist()))
