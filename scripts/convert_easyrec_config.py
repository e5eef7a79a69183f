r"""Converts an EasyRec pipeline config (protobuf text format) into a configs/*.py file.

  python scripts/convert_easyrec_config.py pipeline.config > configs/mine.py
  python scripts/train.py --config=configs/mine.py

The written file sets what the pipeline config sets, as an ml_collections config with
get_config(arg); loading it gives the same config as `--config=pipeline.config`. A
field mmoe_jax does not support stops the conversion with the list of all of them.
"""

import sys

from absl import app

from mmoe_jax.config import easyrec


def main(argv):
  if len(argv) != 2:
    raise app.UsageError('usage: convert_easyrec_config.py pipeline.config > configs/mine.py')
  sys.stdout.write(easyrec.to_python(argv[1]))


if __name__ == '__main__':
  app.run(main)
