r"""Trains (or resumes) a model and prints the final evaluation as one JSON line.

  python scripts/train.py --config=configs/mmoe.py
  python scripts/train.py --config=configs/mmoe.py:full --config.model_dir=/tmp/mmoe
  python scripts/train.py --config=pipeline.config    # an EasyRec pipeline config, unchanged

Running the same command again resumes from the latest checkpoint in model_dir. model_dir
records the run's config (pipeline.config, config.json): a rerun may change num_steps,
logging, checkpoint and evaluation cadence and the learning rate (each change is logged);
any other change is an error naming the fields, unless --fresh (move the old run aside,
start anew) or --accept_config (continue from the checkpoint with the new config).
"""

import json

from mmoe_jax import cli
from mmoe_jax.training import train_lib

FRESH, ACCEPT_CONFIG = cli.define_resume_flags()


def main():
  result = train_lib.train_and_evaluate(cli.CONFIG.value, fresh=FRESH.value,
                                        accept_config=ACCEPT_CONFIG.value)
  print(json.dumps(result), flush=True)


if __name__ == '__main__':
  cli.run(main)
