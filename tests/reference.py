"""A slow, obviously-correct MMoE: a Python loop over experts, reading the same params.

Used only by tests, to check the stacked (einsum) model against plain per-expert math.
"""

import jax.numpy as jnp
import numpy as np


def _bn(x, bn, stats, train, eps=1e-3):
  if train:
    mean, var = x.mean(axis=0), x.var(axis=0)
  else:
    mean, var = stats['mean'], stats['var']
  return (x - mean) / jnp.sqrt(var + eps) * bn['scale'] + bn['bias']


def dnn(x, params, stats, num_layers, train, expert=None):
  """One DNN; with `expert` set, reads that slice of stacked [E, ...] params."""
  pick = (lambda a: a) if expert is None else (lambda a: a[expert])
  for i in range(num_layers):
    layer = params[f'dnn_{i}']
    x = x @ pick(layer['kernel']) + pick(layer['bias'])
    if f'bn_{i}' in params:
      bn = {k: pick(v) for k, v in params[f'bn_{i}'].items()}
      st = {k: pick(v) for k, v in stats[f'bn_{i}'].items()} if stats else None
      x = _bn(x, bn, st, train)
    x = jnp.maximum(x, 0)
  return x


def embed(features, specs, tables):
  outs = []
  for spec in specs:
    ids = np.asarray(features[spec.feature_name])
    table = np.asarray(tables[spec.embedding_name])
    if spec.kind == 'tag':
      rows = [table[[i for i in row if i >= 0]] for row in ids]
      pooled = [r.sum(0) if len(r) else np.zeros(table.shape[1]) for r in rows]
      if spec.combiner == 'mean':
        pooled = [p / max(1, (row >= 0).sum()) for p, row in zip(pooled, ids)]
      outs.append(np.stack(pooled))
    else:
      outs.append(np.stack([table[i] if i >= 0 else np.zeros(table.shape[1]) for i in ids]))
  return outs


def mmoe(model, variables, features, train=False):
  """Returns (logits by tower, gates by tower) for an mmoe_jax.models.MMoE."""
  params, stats = variables['params'], variables.get('batch_stats', {})
  x = jnp.concatenate(embed(features, model.features, params['embedding']), axis=-1)
  n = len(model.expert_dnn.hidden_units)
  experts = [dnn(x, params['expert_dnn'], stats.get('expert_dnn'), n, train, expert=e)
             for e in range(model.num_expert)]
  logits, gates = {}, {}
  for tower in model.task_towers:
    t = tower.tower_name
    g = params[f'gate_{t}']
    z = x @ g['kernel'] + g['bias']
    gate = np.exp(z - z.max(-1, keepdims=True))
    gate = gate / gate.sum(-1, keepdims=True)
    mixed = sum(gate[:, e:e + 1] * experts[e] for e in range(model.num_expert))
    h = dnn(mixed, params[f'tower_{t}'], stats.get(f'tower_{t}'), len(tower.dnn.hidden_units),
            train) if tower.dnn.hidden_units else mixed
    out = h @ params[f'output_{t}']['kernel'] + params[f'output_{t}']['bias']
    logits[t], gates[t] = out[:, 0], gate
  return logits, gates
