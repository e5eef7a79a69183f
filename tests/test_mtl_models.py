"""EasyRec's multi-task family beyond MMoE: SimpleMultiTask, ESMM, PLE, DBMTL.

Each model against a plain loop written from EasyRec's definitions (per expert, per
gate, per layer; ../shared/reference/mtl.md sections 2-5), reading the same parameters;
the config errors; ESMM's outputs, losses and metrics; EasyRec's own sample configs.
"""

import json
import os
import types

import flax.linen as nn
import jax
import numpy as np
import pytest

import reference
from conftest import EASYREC_CONFIGS, ROOT
from mmoe_jax import metrics
from mmoe_jax.builder import build_model, predictions_fn
from mmoe_jax.config import (ConfigError, easyrec, import_config, load_config, task_towers,
                             validate)
from mmoe_jax.models import ple
from mmoe_jax.training import losses, sweep, train_lib
from test_model import random_features

MULTI_TASK = os.path.join(EASYREC_CONFIGS, 'multi_task')
CONFIGS = os.path.join(ROOT, 'configs')


def raw(name, arg='tiny'):
  """configs/<name>.py:<arg> as a dict, its tables cut to 100 rows (fast to build)."""
  c = load_config(os.path.join(CONFIGS, f'{name}.py:{arg}')).to_dict()
  for feature in c['feature_configs']:
    feature['hash_bucket_size'] = min(feature['hash_bucket_size'], 100)
  return c


def config(name, arg='tiny'):
  return validate(raw(name, arg))


def softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def dense(x, p):
  return x @ p['kernel'] + p['bias']


def tower(x, params, spec):
  """DNN(tower.dnn) then the Dense output, as every model but DBMTL names them."""
  t = spec.tower_name
  h = reference.dnn(x, params[f'tower_{t}'], None, len(spec.dnn.hidden_units), False)
  return dense(h, params[f'output_{t}'])[:, 0]


def run(model, batch=16, seed=0):
  """(model, variables, features, logits, aux) of a freshly initialized model, eval mode."""
  features = random_features(model, batch, seed)
  # Unboxed from the declared axes, as the trainer holds them.
  variables = nn.meta.unbox(model.init({'params': jax.random.PRNGKey(seed)}, features))
  logits, aux = model.apply(variables, features)
  return variables, features, logits, aux


def embedded(model, params, features):
  specs = model.features
  return dict(zip((f.feature_name for f in specs),
                  reference.embed(features, specs, params['embedding'])))


def assert_close(a, b):
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-5)


# --- SimpleMultiTask -----------------------------------------------------------------------


def test_simple_multi_task_is_one_tower_per_task_on_the_shared_input():
  model = build_model(config('simple_multi_task'))
  variables, features, logits, aux = run(model)
  params = variables['params']
  x = np.concatenate(list(embedded(model, params, features).values()), axis=-1)
  for spec in model.task_towers:
    assert_close(logits[spec.tower_name], tower(x, params, spec))
  assert 'gate_weights' not in aux and set(params) == {
      'embedding', 'tower_ctr', 'output_ctr', 'tower_cvr', 'output_cvr'}


# --- ESMM ----------------------------------------------------------------------------------


def esmm_reference(model, params, features):
  """mtl.md section 2: each group's features through its DNN, concatenated; both towers on
  that vector; pCTCVR = pCTR * pCVR."""
  by_name = embedded(model, params, features)
  groups = dict(model.feature_groups)
  shared = np.concatenate([
      reference.dnn(np.concatenate([by_name[n] for n in groups[g]], axis=-1),
                    params[f'groups_{g}'], None, len(dnn.hidden_units), False)
      for g, dnn in model.groups], axis=-1)
  cvr, ctr = tower(shared, params, model.cvr_tower), tower(shared, params, model.ctr_tower)
  sigmoid = lambda z: 1 / (1 + np.exp(-z))
  return cvr, ctr, sigmoid(cvr) * sigmoid(ctr)


def test_esmm_matches_reference_and_outputs_probs_ctcvr():
  c = config('esmm')
  model = build_model(c)
  variables, features, logits, _ = run(model)
  cvr, ctr, ctcvr = esmm_reference(model, variables['params'], features)
  assert_close(logits['cvr'], cvr)
  assert_close(logits['ctr'], ctr)
  out = predictions_fn(c)(logits)
  assert set(out) == {'logits_cvr', 'probs_cvr', 'logits_ctr', 'probs_ctr', 'probs_ctcvr'}
  assert_close(out['probs_ctcvr'], ctcvr)


def test_esmm_without_groups_reads_the_group_all_as_is():
  c = raw('esmm')
  c['model_config']['feature_groups'] += (dict(
      group_name='all', feature_names=('user_id', 'price')),)
  c['model_config']['esmm']['groups'] = ()
  model = build_model(validate(c))
  assert model.groups[0][0] == 'all' and not model.groups[0][1].hidden_units
  variables, features, logits, _ = run(model)
  params = variables['params']
  by_name = embedded(model, params, features)
  x = np.concatenate([by_name['user_id'], by_name['price']], axis=-1)
  assert_close(logits['ctr'], tower(x, params, model.ctr_tower))


def test_esmm_towers_take_labels_cvr_first():
  """EasyRec's internal tower order is (cvr, ctr): without label_name, cvr takes label 0."""
  c = raw('esmm')
  for name in ('cvr_tower', 'ctr_tower'):
    c['model_config']['esmm'][name]['label_name'] = ''
  c['data_config']['label_fields'] = ('buy', 'clk')
  towers = task_towers(validate(c).model_config)
  assert [(t.tower_name, t.label_name) for t in towers] == [('cvr', 'buy'), ('ctr', 'clk')]


def test_esmm_losses_are_sums_over_every_impression():
  """mtl.md section 2: cvr.weight * sum BCE(y_cvr y_ctr, clip(pCTCVR)) and ctr.weight *
  sum sigmoid CE(z_ctr, y_ctr), with no click mask."""
  towers = task_towers(config('esmm').model_config)
  cvr, ctr = towers
  cvr.weight = 2.0
  z_cvr = np.array([0.3, -1.2, 2.0, 0.0])
  z_ctr = np.array([-0.5, 0.7, 1.5, -2.0])
  clk, buy = np.array([1., 0., 1., 0.]), np.array([1., 0., 0., 0.])
  terms = losses.esmm_task_losses(dict(cvr=z_cvr, ctr=z_ctr), dict(clk=clk, buy=buy), cvr, ctr)
  p = 1 / (1 + np.exp(-z_cvr)) / (1 + np.exp(-z_ctr))
  y = buy * clk
  ctcvr = -np.sum(y * np.log(p) + (1 - y) * np.log(1 - p))
  q = 1 / (1 + np.exp(-z_ctr))
  ctr_loss = -np.sum(clk * np.log(q) + (1 - clk) * np.log(1 - q))
  assert set(terms) == {'weighted_cross_entropy_loss_cvr', 'weighted_cross_entropy_loss_ctr'}
  np.testing.assert_allclose(terms['weighted_cross_entropy_loss_cvr'], 2.0 * ctcvr, rtol=1e-5)
  np.testing.assert_allclose(terms['weighted_cross_entropy_loss_ctr'], ctr_loss, rtol=1e-5)
  # An unclicked row moves the cvr loss: the loss is on the whole impression space.
  moved = losses.esmm_task_losses(dict(cvr=z_cvr + np.array([0, 1., 0, 0]), ctr=z_ctr),
                                  dict(clk=clk, buy=buy), cvr, ctr)
  assert moved['weighted_cross_entropy_loss_cvr'] > terms['weighted_cross_entropy_loss_cvr']


def test_esmm_l2_cvr_tower_uses_y_ctcvr():
  c = raw('esmm')
  c['model_config']['esmm']['cvr_tower'].update(loss_type='L2_LOSS', metrics_set=())
  c = validate(c)
  cvr, ctr = task_towers(c.model_config)
  z_cvr, z_ctr = np.array([0.5, 2.0, -1.0]), np.array([0.1, -0.3, 0.8])
  clk, buy = np.array([1., 1., 0.]), np.array([3., 0., 5.])
  out = predictions_fn(c)(dict(cvr=z_cvr, ctr=z_ctr))
  q = 1 / (1 + np.exp(-z_ctr))
  assert_close(out['y_ctcvr'], z_cvr * q)
  terms = losses.esmm_task_losses(dict(cvr=z_cvr, ctr=z_ctr), dict(clk=clk, buy=buy), cvr, ctr)
  np.testing.assert_allclose(terms['weighted_l2_loss_cvr'],
                             np.mean((buy * clk - z_cvr * q) ** 2), rtol=1e-5)


def test_esmm_metrics_mask_cvr_to_clicked_rows():
  cvr, ctr = task_towers(config('esmm').model_config)
  clk = np.array([1, 1, 1, 0, 0, 1])
  buy = np.array([1, 0, 0, 0, 0, 1])
  preds = dict(probs_cvr=np.array([.9, .2, .3, .99, .98, .1]),
               probs_ctr=np.array([.6, .5, .4, .3, .2, .1]),
               probs_ctcvr=np.array([.5, .1, .2, .3, .05, .01]))
  out = metrics.esmm_metrics(cvr, ctr, preds, dict(clk=clk, buy=buy))
  assert set(out) == {'auc_ctcvr', 'auc_cvr_masked', 'auc_ctr'}
  # Clicked rows 0, 1, 2, 5: buyers score .9 and .1, non-buyers .2 and .3: 2 of 4 pairs.
  assert out['auc_cvr_masked'] == 0.5
  assert out['auc_ctcvr'] == metrics.auc(buy * clk, preds['probs_ctcvr'])
  assert out['auc_ctr'] == metrics.auc(clk, preds['probs_ctr'])


# --- PLE -----------------------------------------------------------------------------------


def ple_reference(model, params, features):
  """mtl.md section 3, layer by layer, expert by expert, gate by gate. Task t's expert k is
  slice t * n + k of the layer's stacked task experts."""
  x = np.concatenate(list(embedded(model, params, features).values()), axis=-1)
  names = [t.tower_name for t in model.task_towers]
  h, s, gates = [x] * len(names), x, {}
  nets = model.extraction_networks
  for l, net in enumerate(nets):
    p = params[net.network_name]
    n, m = net.expert_num_per_task, net.share_num
    shared = [reference.dnn(s, p['share_expert_net'], None,
                            len(net.share_expert_net.hidden_units), False, expert=k)
              for k in range(m)]
    task = [[reference.dnn(h[t], p['task_expert_net'], None,
                           len(net.task_expert_net.hidden_units), False, expert=t * n + k)
             for k in range(n)] for t in range(len(names))]
    new_h = []
    for t, name in enumerate(names):
      g = softmax(dense(h[t], p[f'gate_{name}']))
      gates[f'{net.network_name}/{name}'] = g
      new_h.append(sum(g[:, e:e + 1] * v for e, v in enumerate(task[t] + shared)))
    if l < len(nets) - 1:
      g = softmax(dense(s, p['gate_share']))
      gates[f'{net.network_name}/share'] = g
      s = sum(g[:, e:e + 1] * v for e, v in enumerate(sum(task, []) + shared))
    h = new_h
  return {t.tower_name: tower(h[i], params, t) for i, t in enumerate(model.task_towers)}, gates


@pytest.mark.parametrize('share_num', [2, 0])
def test_ple_matches_per_layer_per_expert_reference(share_num):
  c = raw('ple')
  for net in c['model_config']['ple']['extraction_networks']:
    net['share_num'] = share_num
  c['model_config']['ple']['extraction_networks'] += (dict(
      network_name='layer3', expert_num_per_task=1, share_num=share_num,
      task_expert_net=dict(hidden_units=(8,), use_bn=False),
      share_expert_net=dict(hidden_units=(8,), use_bn=False)),)
  model = build_model(validate(c))
  variables, features, logits, aux = run(model)
  ref_logits, ref_gates = ple_reference(model, variables['params'], features)
  for t in ('ctr', 'cvr'):
    assert_close(logits[t], ref_logits[t])
  assert set(aux['gate_weights']) == set(ref_gates)
  for name, g in ref_gates.items():
    assert_close(aux['gate_weights'][name], g)
  # Layers 1, 2 have shared gates, over T * n + share_num experts; the last layer none.
  assert aux['gate_weights']['layer1/share'].shape == (16, 2 * 2 + share_num)
  assert aux['gate_weights']['layer3/ctr'].shape == (16, 1 + share_num)
  assert 'layer3/share' not in aux['gate_weights']


def test_ple_experts_are_stacked_per_layer():
  model = build_model(config('ple'))
  variables, *_ = run(model)
  layer = variables['params']['layer1']
  # 2 tasks x 2 experts in one [E, D, H] kernel; 2 shared experts in another.
  assert layer['task_expert_net']['dnn_0']['kernel'].shape[0] == 4
  assert layer['share_expert_net']['dnn_0']['kernel'].shape[0] == 2


def test_ple_first_layer_as_one_matmul_equals_module_by_module(monkeypatch):
  """A first layer runs its gates as one matmul (layers.gates) and its task and shared
  experts as one einsum (layers.stacked_dnn) over the parameters of the modules `gate`
  and Dnn would make: the same tree with the same initial values (DenseWeights and
  DnnWeights declare what `dense` and Dnn declare), and their outputs on random parameters
  (biases included)."""
  model = build_model(config('ple'))
  variables, features, *_ = run(model)
  initial = variables
  leaves, tree = jax.tree.flatten(variables)
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  variables = jax.tree.unflatten(tree, [jax.random.normal(k, a.shape) for k, a in
                                        zip(keys, leaves)])
  fused_logits, fused_aux = model.apply(variables, features)
  monkeypatch.setattr(ple, 'plain', lambda spec: False)  # the Dnn modules
  monkeypatch.setattr(ple, 'gates', lambda x, sizes, names: [
      ple.gate(x, size, name) for size, name in zip(sizes, names)])
  unfused = nn.meta.unbox(model.init({'params': jax.random.PRNGKey(0)}, features))
  assert jax.tree.structure(unfused) == tree
  jax.tree.map(np.testing.assert_array_equal, initial, unfused)
  logits, aux = model.apply(variables, features)
  for t in ('ctr', 'cvr'):
    assert_close(fused_logits[t], logits[t])
  for name, g in aux['gate_weights'].items():
    assert_close(fused_aux['gate_weights'][name], g)

# --- DBMTL ---------------------------------------------------------------------------------


def dbmtl_reference(model, params, features, order):
  """mtl.md section 4: bottom, the optional MMoE, the task DNNs, then the relation DNNs in
  `order`, each reading its own DNN output and the relation outputs it names."""
  x = np.concatenate(list(embedded(model, params, features).values()), axis=-1)
  bottom = reference.dnn(x, params['bottom_dnn'], None, len(model.bottom_dnn.hidden_units),
                         False)
  inputs, gates = {t.tower_name: bottom for t in model.task_towers}, {}
  if model.expert_dnn is not None:
    experts = [reference.dnn(bottom, params['expert_dnn'], None,
                             len(model.expert_dnn.hidden_units), False, expert=e)
               for e in range(model.num_expert)]
    for t in model.task_towers:
      g = gates[t.tower_name] = softmax(dense(bottom, params[f'gate_{t.tower_name}']))
      inputs[t.tower_name] = sum(g[:, e:e + 1] * v for e, v in enumerate(experts))
  relation, logits = {}, {}
  for name in order:
    i = [t.tower_name for t in model.task_towers].index(name)
    t, r = model.task_towers[i], model.relations[i]
    f = reference.dnn(inputs[name], params[f'tower_{name}'], None, len(t.dnn.hidden_units),
                      False)
    u = np.concatenate([f] + [relation[a] for a in r.relation_tower_names], axis=-1)
    relation[name] = reference.dnn(u, params[f'relation_dnn_{name}'], None,
                                   len(r.relation_dnn.hidden_units), False)
    logits[name] = dense(relation[name], params[f'output_{name}']['dnn_0'])[:, 0]
  return logits, gates


@pytest.mark.parametrize('arg', ['tiny', 'tiny,mmoe'])
def test_dbmtl_matches_reference(arg):
  model = build_model(config('dbmtl', arg))
  variables, features, logits, aux = run(model)
  ref_logits, ref_gates = dbmtl_reference(model, variables['params'], features, ['ctr', 'cvr'])
  for t in ('ctr', 'cvr'):
    assert_close(logits[t], ref_logits[t])
  for t, g in ref_gates.items():
    assert_close(aux['gate_weights'][t], g)
  assert ('gate_weights' in aux) == (arg == 'tiny,mmoe')


def three_towers(relations):
  """configs/dbmtl.py:tiny with towers a, b, c reading `relations` (name -> names)."""
  c = raw('dbmtl')
  ctr = c['model_config']['dbmtl']['task_towers'][0]
  c['model_config']['dbmtl']['task_towers'] = tuple(
      dict(ctr, tower_name=name, label_name=label, relation_tower_names=relations.get(name, ()))
      for name, label in (('a', 'clk'), ('b', 'buy'), ('c', 'clk')))
  return c


def test_dbmtl_towers_run_in_relation_order_and_gradients_cross_towers():
  """Tower a reads c, which comes later in the config: the towers run c, a, b (EasyRec needs
  c first in the file; any order that respects the relations gives the same outputs)."""
  model = build_model(validate(three_towers(dict(a=('c',), b=('a', 'c')))))
  assert [model.task_towers[i].tower_name for i in model.order] == ['c', 'a', 'b']
  variables, features, logits, _ = run(model)
  ref, _ = dbmtl_reference(model, variables['params'], features, ['c', 'a', 'b'])
  for t in 'abc':
    assert_close(logits[t], ref[t])
  # No stop-gradient: tower b's output depends on c's relation DNN.
  grads = jax.grad(lambda p: model.apply(dict(variables, params=p), features)[0]['b'].sum())(
      variables['params'])
  assert np.abs(grads['relation_dnn_c']['dnn_0']['kernel']).sum() > 0


@pytest.mark.parametrize('relations, match', [
    (dict(a=('b',), b=('a',)),
     r"task_towers\[0\]\.relation_tower_names: the towers read each other in a cycle: "
     r"a -> b -> a"),
    (dict(b=('c',), c=('c',)), r"task_towers\[2\]\.relation_tower_names: .*cycle: c -> c"),
    (dict(b=('ctr',)), r"model_config\.dbmtl\.task_towers\[1\]\.relation_tower_names\[0\]: "
                       r"unknown tower 'ctr'"),
    (dict(b=('a', 'a')), r"task_towers\[1\]\.relation_tower_names\[1\].*'a' is repeated"),
])
def test_dbmtl_relation_errors_name_the_field(relations, match):
  with pytest.raises(ConfigError, match=match):
    validate(three_towers(relations))


@pytest.mark.parametrize('change, match', [
    (dict(num_expert=0), r'model_config\.dbmtl\.num_expert: must be > 0 with expert_dnn'),
    (dict(expert_dnn=dict(hidden_units=())), r'dbmtl\.expert_dnn\.hidden_units: experts need'),
])
def test_dbmtl_mmoe_errors(change, match):
  c = raw('dbmtl', 'tiny,mmoe')
  c['model_config']['dbmtl'].update(change)
  with pytest.raises(ConfigError, match=match):
    validate(c)


def test_dbmtl_num_expert_without_expert_dnn_is_an_error():
  c = raw('dbmtl')
  c['model_config']['dbmtl']['num_expert'] = 4
  with pytest.raises(ConfigError, match=r'dbmtl\.num_expert: 4 experts need an expert_dnn'):
    validate(c)


# --- config errors of PLE and ESMM ---------------------------------------------------------


@pytest.mark.parametrize('change, match', [
    (dict(expert_num_per_task=0),
     r'ple\.extraction_networks\[1\]\.expert_num_per_task: must be > 0'),
    (dict(share_num=-1), r'ple\.extraction_networks\[1\]\.share_num: must be >= 0'),
    (dict(share_expert_net=None),
     r'ple\.extraction_networks\[1\]\.share_expert_net: share_num 2 needs shared experts'),
    (dict(share_expert_net=dict(hidden_units=(4,))),
     r'extraction_networks\[1\]\.share_expert_net\.hidden_units: .*task_expert_net ends in 8, '
     r'share_expert_net in 4'),
    (dict(task_expert_net=dict(hidden_units=())),
     r'extraction_networks\[1\]\.task_expert_net\.hidden_units: experts need'),
    (dict(network_name='layer1'), r"extraction_networks\[1\]\.network_name: 'layer1' is repeated"),
])
def test_ple_errors_name_the_field(change, match):
  c = raw('ple')
  net = c['model_config']['ple']['extraction_networks'][1]
  for key, value in change.items():
    if value is None:
      del net[key]
    else:
      net[key] = value
  with pytest.raises(ConfigError, match=match):
    validate(c)


def test_ple_needs_a_layer():
  c = raw('ple')
  c['model_config']['ple']['extraction_networks'] = ()
  with pytest.raises(ConfigError, match=r'ple\.extraction_networks: at least one layer'):
    validate(c)


@pytest.mark.parametrize('tower, change, match', [
    ('ctr_tower', dict(loss_type='L2_LOSS', metrics_set=()),
     r'esmm\.ctr_tower\.loss_type: the ctr tower is a binary CLASSIFICATION'),
    ('cvr_tower', dict(num_class=2, metrics_set=()),
     r'esmm\.cvr_tower\.num_class: ESMM towers have one output'),
    ('ctr_tower', dict(tower_name='cvr'), r"esmm\.ctr_tower\.tower_name: 'cvr' is also"),
    ('cvr_tower', dict(label_name='click'), r"esmm\.cvr_tower\.label_name: unknown label"),
])
def test_esmm_errors_name_the_field(tower, change, match):
  c = raw('esmm')
  c['model_config']['esmm'][tower].update(change)
  with pytest.raises(ConfigError, match=match):
    validate(c)


def test_esmm_group_errors():
  c = raw('esmm')
  groups = c['model_config']['esmm']['groups']
  c['model_config']['esmm']['groups'] = groups + (dict(groups[0]),)
  with pytest.raises(ConfigError, match=r"esmm\.groups\[3\]\.input: 'user' is repeated"):
    validate(c)
  c['model_config']['esmm']['groups'] = (dict(groups[0], input='usr'),)
  with pytest.raises(ConfigError, match=r"esmm\.groups\[0\]\.input: unknown feature group "
                                        r"'usr' \(did you mean 'user'\?\)"):
    validate(c)


def test_built_in_models_other_than_esmm_read_the_group_all():
  c = raw('ple')
  c['model_config']['feature_groups'][0]['group_name'] = 'everything'
  with pytest.raises(ConfigError, match="the built-in PLE reads the group named 'all'"):
    validate(c)


# --- gates, configs, sample configs --------------------------------------------------------


@pytest.mark.parametrize('name, arg', [('ple', 'tiny'), ('dbmtl', 'tiny,mmoe')])
def test_gates_are_distributions(name, arg):
  _, _, _, aux = run(build_model(config(name, arg)), batch=32)
  assert aux['gate_weights']
  for g in aux['gate_weights'].values():
    assert np.all(np.asarray(g) >= 0)
    np.testing.assert_allclose(np.asarray(g).sum(-1), 1.0, rtol=1e-6)


@pytest.mark.parametrize('name', ['esmm', 'ple', 'dbmtl'])
def test_easyrec_sample_configs_read_and_convert(name, tmp_path):
  path = os.path.join(MULTI_TASK, f'{name}_on_taobao.config')
  c = validate(load_config(path))
  towers = [(t.tower_name, t.label_name) for t in task_towers(c.model_config)]
  assert towers == ([('cvr', 'buy'), ('ctr', 'clk')] if name == 'esmm' else
                    [('ctr', 'clk'), ('cvr', 'buy')])
  assert c.model_config.model_class == {'esmm': 'ESMM', 'ple': 'PLE', 'dbmtl': 'DBMTL'}[name]
  params = c.model_config[name]
  assert params.l2_regularization == 1e-6
  if name == 'esmm':
    assert [g.input for g in params.groups] == ['user', 'item', 'combo']
    assert params.groups[2].dnn.hidden_units == (128, 96, 64, 32)
    assert params.cvr_tower.metrics_set[0].auc.num_thresholds == 10000
  elif name == 'ple':
    assert [n.share_num for n in params.extraction_networks] == [3, 3, 3]
    assert params.extraction_networks[0].task_expert_net.hidden_units == (128, 64, 32)
  else:
    assert params.bottom_dnn.hidden_units == (1024, 512, 256) and 'expert_dnn' not in params
    assert params.task_towers[1].relation_tower_names == ('ctr',)
    assert params.task_towers[1].relation_dnn.hidden_units == (32,)
  converted = tmp_path / 'converted.py'  # the converter's round trip
  converted.write_text(easyrec.to_python(path))
  assert load_config(str(converted)).to_dict() == load_config(path).to_dict()


def small(c):
  """A sample config, made small enough to train in seconds on the embedded data: only
  paths, sizes and steps change, as --config.* flags would change them."""
  c.train_input_path = c.eval_input_path = ''
  c.train_config.update(num_steps=4, save_checkpoints_steps=4, log_step_count_steps=2)
  c.data_config.update(batch_size=32, eval_batch_size=256)
  c.synthetic.update(train_rows=600, eval_rows=300)
  for feature in c.feature_configs:
    feature.hash_bucket_size = min(feature.hash_bucket_size, 500)
  model = c.model_config
  for dnn in _dnns(model[model.model_class.lower()]):
    dnn.hidden_units = dnn.hidden_units[-1:]  # one layer of the last width: widths still match
  return c


def _dnns(message):
  for key, value in message.items():
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
      if hasattr(v, 'items'):
        if 'hidden_units' in v:
          yield v
        else:
          yield from _dnns(v)


@pytest.mark.parametrize('name', ['esmm', 'ple', 'dbmtl'])
def test_easyrec_sample_configs_train_on_the_embedded_data(name, tmp_path):
  c = small(load_config(os.path.join(MULTI_TASK, f'{name}_on_taobao.config')))
  c.model_dir = str(tmp_path / 'model')
  final = train_lib.train_and_evaluate(c)
  assert final['step'] == 4
  names = (['auc_ctcvr', 'auc_cvr_masked', 'auc_ctr', 'oracle_auc_ctcvr', 'oracle_auc_cvr_masked',
            'oracle_auc_ctr'] if name == 'esmm' else
           ['auc_ctr', 'auc_cvr', 'oracle_auc_ctr', 'oracle_auc_cvr'])
  # Every evaluation also reports each binary target's log loss, NE and calibration.
  targets = ['ctcvr', 'cvr_masked', 'ctr'] if name == 'esmm' else ['ctr', 'cvr']
  extra = [f'{m}_{t}' for m in ('logloss', 'normalized_entropy', 'calibration') for t in targets]
  assert (final['checkpoint'], final['checkpoint_step']) == ('last', 4)
  assert sorted(k for k in final if k not in ('step', 'checkpoint', 'checkpoint_step')) == sorted(
      names + extra)
  assert all(0 < final[k] < 1 for k in names)


@pytest.mark.parametrize('name, arg', [('simple_multi_task', 'tiny'), ('dbmtl', 'tiny,mmoe')])
def test_configs_train(name, arg, tmp_path):
  """The models the sample configs above leave out train too (ESMM, PLE and DBMTL's
  configs build as the samples do, test_configs_full_sizes_are_easyrec_samples)."""
  c = raw(name, arg)
  c['model_dir'] = str(tmp_path / 'model')
  c['train_config'].update(num_steps=4, save_checkpoints_steps=4, log_step_count_steps=2)
  c['synthetic'].update(train_rows=600, eval_rows=300)
  final = train_lib.train_and_evaluate(c)
  assert final['step'] == 4 and 0 < final['auc_ctr'] < 1


@pytest.mark.parametrize('name', ['esmm', 'ple', 'dbmtl', 'simple_multi_task'])
def test_configs_full_sizes_are_easyrec_samples(name):
  c = validate(load_config(os.path.join(CONFIGS, f'{name}.py')))
  m = c.model_config
  assert m.model_class == {'esmm': 'ESMM', 'ple': 'PLE', 'dbmtl': 'DBMTL',
                           'simple_multi_task': 'SimpleMultiTask'}[name]
  if name in ('esmm', 'ple', 'dbmtl'):  # the model sections of EasyRec's own samples
    sample = validate(load_config(os.path.join(MULTI_TASK, f'{name}_on_taobao.config')))
    assert _plain(m[name]) == _plain(sample.model_config[name], use_bn=False)
    assert m.embedding_regularization == sample.model_config.embedding_regularization


def _plain(value, **dnn):
  """A message as plain dicts and tuples, every DNN's fields updated with `dnn`."""
  if hasattr(value, 'to_dict'):  # ConfigDicts inside tuples stay ConfigDicts in to_dict
    value = value.to_dict()
  if isinstance(value, dict):
    out = {k: _plain(v, **dnn) for k, v in value.items()}
    return dict(out, **dnn) if 'hidden_units' in out else out
  if isinstance(value, tuple):
    return tuple(_plain(v, **dnn) for v in value)
  return value


@pytest.mark.parametrize('name', ['esmm', 'ple', 'dbmtl', 'simple_multi_task'])
def test_sweep_replica_equals_its_run_alone(name, tmp_path):
  """A vmapped sweep of 2 seeds: replica 1 trains and evaluates as its run alone (ESMM: its
  own losses and metrics inside the vmapped step and the sweep's evaluation)."""
  module = config_module(name)
  runs = [sweep.Run('tiny', seed=s, **SMALL) for s in range(2)]
  sweep.run_sweep(module, runs, str(tmp_path / 'sweep'), {'model_dir': str(tmp_path / 'x')})
  rows = [json.loads(line) for line in open(tmp_path / 'sweep' / 'results.jsonl')]
  config = runs[1].config(module, {'model_dir': str(tmp_path / 'alone')})
  alone = train_lib.train_and_evaluate(config)
  assert rows[1]['step'] == alone['step'] == 4
  for key, value in alone.items():
    if key not in ('checkpoint', 'checkpoint_step'):  # train.py's, not a metric
      np.testing.assert_allclose(rows[1][key], value, rtol=1e-4, err_msg=key)


# Sizes of the sweep test: tables of 100 rows, 4 steps. No export: a sweep exports nothing,
# and the run alone's final export (a compile of its own) has no bearing on the metrics.
SMALL = {'train_config.num_steps': 4, 'train_config.save_checkpoints_steps': 4,
         'train_config.log_step_count_steps': 2, 'synthetic.train_rows': 600,
         'synthetic.eval_rows': 300, 'export_config.exporter_type': 'none'}


def config_module(name):
  """configs/<name>.py, its tables cut to 100 rows, as a module with get_config."""
  module = import_config(os.path.join(CONFIGS, f'{name}.py'))
  get_config = module.get_config

  def small_tables(arg=None):
    c = get_config(arg)
    for feature in c.feature_configs:
      feature.hash_bucket_size = min(feature.hash_bucket_size, 100)
    return c

  return types.SimpleNamespace(get_config=small_tables)
