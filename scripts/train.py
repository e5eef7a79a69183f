r"""Trains (or resumes) a model and prints the final evaluation as one JSON line.

  python scripts/train.py --config=configs/mmoe.py
  python scripts/train.py --config=configs/mmoe.py:full --config.model_dir=/tmp/mmoe
  python scripts/train.py --config=pipeline.config    # an EasyRec pipeline config, unchanged

Running the same command again resumes from the latest checkpoint in model_dir.
"""

import json

from mmoe_jax import cli
from mmoe_jax.training import train_lib


def main():
  print(json.dumps(train_lib.train_and_evaluate(cli.CONFIG.value)), flush=True)


if __name__ == '__main__':
  cli.run(main)
