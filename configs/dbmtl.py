r"""DBMTL on the taobao click/buy schema: EasyRec's `model_class: "DBMTL"`.

Mirrors EasyRec's samples/model_config/dbmtl_on_taobao.config: bottom_dnn
[1024,512,256], towers ctr/clk and cvr/buy [256,128,64,32] with relation_dnn [32], the
cvr tower reading the ctr tower's relation output; l2_regularization 1e-6,
embedding_regularization 5e-6. `:mmoe` is EasyRec's dbmtl_mmoe_on_taobao.config instead:
bottom_dnn [1024], then an MMoE of 8 experts [256,128,64,32] with a gate per tower.
Data, features, training and the :full and :tiny variants are configs/mmoe.py's; batch
norm is off, as there (configs/mmoe.py `dnn`).

  python scripts/train.py --config=configs/dbmtl.py
  python scripts/train.py --config=configs/dbmtl.py:tiny        # seconds
  python scripts/train.py --config=configs/dbmtl.py:tiny,mmoe   # with the MMoE bottom
"""

import os

from mmoe_jax.config import complete, import_config, parse_arg

mmoe = import_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'mmoe.py'))


def bayes_task_tower(tower_name, label_name, units, relation_units, relation_tower_names=()):
  return dict(mmoe.task_tower(tower_name, label_name, units),
              relation_tower_names=relation_tower_names, relation_dnn=mmoe.dnn(relation_units))


def model_config(bottom_units, tower_units, relation_units, expert_units=None, num_expert=0):
  dbmtl = dict(
      bottom_dnn=mmoe.dnn(bottom_units),
      task_towers=(bayes_task_tower('ctr', 'clk', tower_units, relation_units),
                   bayes_task_tower('cvr', 'buy', tower_units, relation_units, ('ctr',))),
      l2_regularization=1e-6,
  )
  if expert_units:
    dbmtl.update(expert_dnn=mmoe.dnn(expert_units), num_expert=num_expert)
  return dict(
      model_class='DBMTL',
      feature_groups=(dict(group_name='all', feature_names=mmoe.GROUP_ALL, wide_deep='DEEP'),),
      dbmtl=dbmtl,
      embedding_regularization=5e-6,
  )


ARGS = dict(full=False, tiny=False, mmoe=False)


def get_config(arg=None):
  arg = parse_arg(arg, **ARGS)
  config = mmoe.base_config(arg, 'dbmtl_taobao', ARGS)
  if arg.tiny:
    sizes = dict(bottom_units=(16,), tower_units=(8,), relation_units=(4,),
                 expert_units=(8,) if arg.mmoe else None, num_expert=3)
  else:
    sizes = dict(bottom_units=(1024,) if arg.mmoe else (1024, 512, 256),
                 tower_units=(256, 128, 64, 32), relation_units=(32,),
                 expert_units=(256, 128, 64, 32) if arg.mmoe else None, num_expert=8)
  config['model_config'] = model_config(**sizes)
  return complete(config)
