"""EasyRec's ESMM (Ma et al., SIGIR 2018), `model_class: "ESMM"`: pCTCVR = pCTR x pCVR.

Both towers read one shared vector; the cvr tower is trained only through the product,
on the whole impression space (training/losses.py `esmm_task_losses`).
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from mmoe_jax.models import mmoe
from mmoe_jax.models.embedding import Embedding, FeatureSpec, embedding_l2
from mmoe_jax.models.layers import Dnn, DnnSpec
from mmoe_jax.models.mmoe import TowerSpec, tower_logits


class ESMM(nn.Module):
  """The shared vector is the concatenation, in `groups` order, of DNN(group's features)
  for each (feature group, dnn) of `groups` (EasyRec's `groups {input, dnn}`; with none
  set, the builder passes ('all', the identity)). Each tower: DNN, then one logit.

  Returns (logits, aux): logits by tower name, [B] each; aux['embedding_l2'].
  """
  features: tuple[FeatureSpec, ...]  # every feature a group reads, once
  feature_groups: tuple[tuple[str, tuple[str, ...]], ...]  # (group name, feature names)
  groups: tuple[tuple[str, DnnSpec], ...]  # (feature group, its DNN), EasyRec's groups
  cvr_tower: TowerSpec
  ctr_tower: TowerSpec
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inputs, *, train: bool = False):
    embedded = Embedding(self.features, self.dtype, name='embedding')(inputs)
    by_name = dict(zip((f.feature_name for f in self.features), embedded))
    names = dict(self.feature_groups)
    shared = jnp.concatenate(
        [Dnn(dnn, name=f'groups_{group}')(
            jnp.concatenate([by_name[n] for n in names[group]], axis=-1), train=train)
         for group, dnn in self.groups], axis=-1)
    logits = {t.tower_name: tower_logits(shared, t, train)
              for t in (self.cvr_tower, self.ctr_tower)}
    return logits, dict(embedding_l2=embedding_l2(embedded, self.features))


def predictions(logits, towers):
  """EasyRec's ESMM outputs: each tower's (mmoe.predictions), and pCTCVR.

  towers: (cvr, ctr). probs_ctcvr = probs_<cvr> * probs_<ctr>; for an L2_LOSS cvr tower,
  y_ctcvr = y_<cvr> * probs_<ctr> instead.
  """
  out = mmoe.predictions(logits, towers)
  cvr, ctr = towers
  p_ctr = out[f'probs_{ctr.tower_name}']
  if cvr.loss_type == 'L2_LOSS':
    out['y_ctcvr'] = out[f'y_{cvr.tower_name}'] * p_ctr
  else:
    out['probs_ctcvr'] = out[f'probs_{cvr.tower_name}'] * p_ctr
  return out
