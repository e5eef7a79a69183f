r"""SimpleMultiTask on the taobao click/buy schema: EasyRec's `model_class: "SimpleMultiTask"`.

One tower per task on the group `all`, sharing only the embeddings: towers ctr/clk and
cvr/buy [256,192,128,64] (configs/mmoe.py's towers), l2_regularization 1e-6,
embedding_regularization 5e-5. EasyRec's benchmark baseline for its multi-task models.
Data, features, training and the :full and :tiny variants are configs/mmoe.py's; batch
norm is off, as there (configs/mmoe.py `dnn`).

  python scripts/train.py --config=configs/simple_multi_task.py
  python scripts/train.py --config=configs/simple_multi_task.py:tiny   # seconds
"""

import os

from mmoe_jax.config import complete, import_config, parse_arg

mmoe = import_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'mmoe.py'))


ARGS = dict(full=False, tiny=False)


def get_config(arg=None):
  arg = parse_arg(arg, **ARGS)
  config = mmoe.base_config(arg, 'simple_multi_task_taobao', ARGS)
  units = (8,) if arg.tiny else (256, 192, 128, 64)
  config['model_config'] = dict(
      model_class='SimpleMultiTask',
      feature_groups=(dict(group_name='all', feature_names=mmoe.GROUP_ALL, wide_deep='DEEP'),),
      simple_multi_task=dict(
          task_towers=(mmoe.task_tower('ctr', 'clk', units), mmoe.task_tower('cvr', 'buy', units)),
          l2_regularization=1e-6,
      ),
      embedding_regularization=5e-5,
  )
  return complete(config)
