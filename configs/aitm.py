r"""AITM (Xi et al., KDD 2021) on the taobao click/buy schema: EasyRec's backbone model.

Mirrors EasyRec's samples/model_config/aitm_on_taobao.config: `model_class:
"MultiTaskModel"` with the backbone group `all` -> share_bottom MLP [512, 256] -> ctr_tower
and cvr_tower MLP [128] each -> cvr_aitm = AITMTower([cvr_tower, ctr_tower], transfer_mlp
[128]); output_blocks [ctr_tower, cvr_aitm] feed the towers ctr/clk and cvr/buy, DNN [64]
each, the cvr tower with the losses CLASSIFICATION and ORDER_CALIBRATE_LOSS (empty:
no relation_tower_names, as in the sample); l2_regularization 1e-6,
embedding_regularization 5e-6. Data, features, training and
the :full and :tiny variants are configs/mmoe.py's. Batch norm is off and the MLPs have
biases, as in configs/mmoe_backbone.py (its measurement); `:bn` restores EasyRec's MLP
and DNN defaults.

  python scripts/train.py --config=configs/aitm.py
  python scripts/train.py --config=configs/aitm.py:tiny   # seconds
  python scripts/train.py --config=configs/aitm.py:bn     # EasyRec's MLP/DNN defaults
"""

import os

from mmoe_jax.config import complete, import_config, parse_arg

mmoe = import_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'mmoe.py'))
mmoe_backbone = import_config(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), 'mmoe_backbone.py'))
block = mmoe_backbone.block


def model_config(bottom_units=(512, 256), tower_units=(128,), task_units=(64,), bn=False):
  def mlp(units):
    plain = {} if bn else dict(use_bn=False, use_final_bn=False, use_bias=True,
                               use_final_bias=True)
    return dict(keras_layer=dict(class_name='MLP', mlp=dict(hidden_units=units, **plain)))

  # The sample's cvr tower lists a CLASSIFICATION and an ORDER_CALIBRATE_LOSS loss; with no
  # relation_tower_names the calibration term is empty, in EasyRec as here (a warning).
  towers = (mmoe.task_tower('ctr', 'clk', task_units),
            dict(mmoe.task_tower('cvr', 'buy', task_units),
                 losses=(dict(loss_type='CLASSIFICATION'), dict(loss_type='ORDER_CALIBRATE_LOSS'))))
  if bn:
    towers = tuple(dict(t, dnn=dict(hidden_units=task_units)) for t in towers)
  return dict(
      model_name='AITM',
      model_class='MultiTaskModel',
      feature_groups=(dict(group_name='all', feature_names=mmoe.GROUP_ALL, wide_deep='DEEP'),),
      backbone=dict(
          blocks=(
              block('share_bottom', [dict(feature_group_name='all')], **mlp(bottom_units)),
              block('ctr_tower', ['share_bottom'], **mlp(tower_units)),
              block('cvr_tower', ['share_bottom'], **mlp(tower_units)),
              block('cvr_aitm', ['cvr_tower', 'ctr_tower'], merge_inputs_into_list=True,
                    keras_layer=dict(class_name='AITMTower', aitm=dict(
                        transfer_mlp=mlp(tower_units)['keras_layer']['mlp']))),
          ),
          output_blocks=('ctr_tower', 'cvr_aitm'),
      ),
      model_params=dict(task_towers=towers, l2_regularization=1e-6),
      embedding_regularization=5e-6,
  )


ARGS = dict(full=False, tiny=False, bn=False)


def get_config(arg=None):
  arg = parse_arg(arg, **ARGS)
  config = mmoe.base_config(arg, 'aitm_taobao', ARGS)
  sizes = dict(bottom_units=(16,), tower_units=(8,), task_units=(8,)) if arg.tiny else {}
  config['model_config'] = model_config(bn=arg.bn, **sizes)
  return complete(config)
