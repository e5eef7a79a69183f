r"""PLE (Tang et al., RecSys 2020) on the taobao click/buy schema: EasyRec's `model_class: "PLE"`.

Mirrors EasyRec's samples/model_config/ple_on_taobao.config: three extraction networks,
each with 3 experts per task and 3 shared experts ([128,64,32], then [64,32,16] twice),
towers ctr/clk [128,64,32] and cvr/buy [256,128,64,32]; l2_regularization 1e-6,
embedding_regularization 5e-6. Data, features, training and the :full and :tiny variants
are configs/mmoe.py's; batch norm is off, as there (configs/mmoe.py `dnn`).

  python scripts/train.py --config=configs/ple.py
  python scripts/train.py --config=configs/ple.py:tiny   # seconds
"""

import os

from mmoe_jax.config import complete, import_config, parse_arg

mmoe = import_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'mmoe.py'))


def extraction_network(name, units, experts=3, shared=3):
  return dict(network_name=name, expert_num_per_task=experts, share_num=shared,
              task_expert_net=mmoe.dnn(units), share_expert_net=mmoe.dnn(units))


def model_config(layers, ctr_units, cvr_units, experts=3, shared=3):
  return dict(
      model_class='PLE',
      feature_groups=(dict(group_name='all', feature_names=mmoe.GROUP_ALL, wide_deep='DEEP'),),
      ple=dict(
          extraction_networks=tuple(extraction_network(f'layer{i + 1}', units, experts, shared)
                                    for i, units in enumerate(layers)),
          task_towers=(mmoe.task_tower('ctr', 'clk', ctr_units),
                       mmoe.task_tower('cvr', 'buy', cvr_units)),
          l2_regularization=1e-6,
      ),
      embedding_regularization=5e-6,
  )


ARGS = dict(full=False, tiny=False)


def get_config(arg=None):
  arg = parse_arg(arg, **ARGS)
  config = mmoe.base_config(arg, 'ple_taobao', ARGS)
  if arg.tiny:
    config['model_config'] = model_config(((16, 8), (8,)), (8,), (8,), experts=2, shared=2)
  else:
    config['model_config'] = model_config(((128, 64, 32), (64, 32, 16), (64, 32, 16)),
                                          (128, 64, 32), (256, 128, 64, 32))
  return complete(config)
