r"""ESMM (Ma et al., SIGIR 2018) on the taobao click/buy schema: EasyRec's `model_class: "ESMM"`.

Mirrors EasyRec's samples/model_config/esmm_on_taobao.config: the feature groups user,
item and combo, each through its own DNN ([256,128,96,64], [256,128,96,64],
[128,96,64,32]), concatenated; towers cvr/buy and ctr/clk [128,96,64,32,16];
l2_regularization 1e-6. pCTCVR = pCTR x pCVR, and both losses are on every impression.
Outputs probs_ctr, probs_cvr, probs_ctcvr; metrics auc_ctr, auc_ctcvr, auc_cvr_masked
(the cvr tower on clicked rows). Data, features, training and the :full and :tiny
variants are configs/mmoe.py's; batch norm is off, as there (configs/mmoe.py `dnn`).

  python scripts/train.py --config=configs/esmm.py
  python scripts/train.py --config=configs/esmm.py:tiny   # seconds
"""

import os

from mmoe_jax.config import complete, import_config, parse_arg

mmoe = import_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'mmoe.py'))

# EasyRec's sample splits the group `all` in three.
GROUPS = dict(
    user=('user_id', 'cms_segid', 'cms_group_id', 'age_level', 'pvalue_level',
          'shopping_level', 'occupation', 'new_user_class_level'),
    item=('adgroup_id', 'cate_id', 'campaign_id', 'customer', 'brand', 'price'),
    combo=('pid', 'tag_category_list', 'tag_brand_list'),
)


def model_config(group_units, tower_units):
  return dict(
      model_class='ESMM',
      feature_groups=tuple(dict(group_name=g, feature_names=names, wide_deep='DEEP')
                           for g, names in GROUPS.items()),
      esmm=dict(
          groups=tuple(dict(input=g, dnn=mmoe.dnn(group_units[g])) for g in GROUPS),
          # num_thresholds as the sample's; accepted, and the AUC is exact anyway
          cvr_tower=dict(mmoe.task_tower('cvr', 'buy', tower_units),
                         metrics_set=(dict(auc=dict(num_thresholds=10000)),)),
          ctr_tower=mmoe.task_tower('ctr', 'clk', tower_units),
          l2_regularization=1e-6,
      ),
      embedding_regularization=5e-5,
  )


ARGS = dict(full=False, tiny=False)


def get_config(arg=None):
  arg = parse_arg(arg, **ARGS)
  config = mmoe.base_config(arg, 'esmm_taobao', ARGS)
  if arg.tiny:
    config['model_config'] = model_config(dict(user=(8,), item=(8,), combo=(8,)), (8,))
  else:
    config['model_config'] = model_config(
        dict(user=(256, 128, 96, 64), item=(256, 128, 96, 64), combo=(128, 96, 64, 32)),
        (128, 96, 64, 32, 16))
  return complete(config)
