"""The device mesh and the layout of arrays on it, from config.sharding (not in EasyRec).

An array's dimensions have logical names (vocab, embed, expert, mlp, batch, replica);
config.sharding maps each to mesh axes (() = replicated). Parameters and batch
statistics declare theirs where they are created (`declared_axes` reads them), which also
gives each its role (`is_table`, `is_kernel`); optimizer state follows its parameter,
batches split their rows over `batch`. Meshes use Auto axis types (classic GSPMD; jax 0.10's
default is Explicit): XLA then partitions a lookup in a row-sharded table itself, as a
local masked gather plus an all-reduce of the [B, D] result, so no table is ever
gathered whole.
"""

import logging
import math
import os

import flax.linen as nn
import jax
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from mmoe_jax.config import vocab_size

log = logging.getLogger('mmoe_jax')


def initialize_distributed():
  """Joins a multi-process run through jax.distributed when the environment asks for one.

  JAX_COORDINATOR_ADDRESS=host:port (process 0's), with JAX_NUM_PROCESSES and
  JAX_PROCESS_ID, starts one process of a run; MMOE_JAX_DISTRIBUTED=auto lets JAX detect
  the cluster (Cloud TPU, SLURM, Open MPI). Returns whether it initialized.
  """
  address = os.environ.get('JAX_COORDINATOR_ADDRESS')
  if not address and os.environ.get('MMOE_JAX_DISTRIBUTED') != 'auto':
    return False
  number = lambda name: int(os.environ[name]) if os.environ.get(name) else None
  jax.distributed.initialize(address or None, num_processes=number('JAX_NUM_PROCESSES'),
                             process_id=number('JAX_PROCESS_ID'))
  log.info('process %d of %d; %d of %d devices here', jax.process_index(), jax.process_count(),
           jax.local_device_count(), jax.device_count())
  return True


def make_mesh(sharding):
  """The mesh of config.sharding: mesh_axes sized mesh_shape, -1 = the devices left over.

  Without a -1 the mesh may use fewer devices than there are (the first ones).
  """
  shape, devices = list(sharding.mesh_shape), jax.devices()
  fixed = math.prod(n for n in shape if n != -1)
  if -1 in shape:
    if len(devices) % fixed:
      raise ValueError(f'sharding.mesh_shape: {list(sharding.mesh_shape)} does not divide '
                       f'{len(devices)} devices')
    shape[shape.index(-1)] = len(devices) // fixed
  if math.prod(shape) > len(devices):
    raise ValueError(f'sharding.mesh_shape: {shape} needs {math.prod(shape)} devices, '
                     f'there are {len(devices)}')
  return jax.make_mesh(tuple(shape), tuple(sharding.mesh_axes),
                       axis_types=(AxisType.Auto,) * len(shape),
                       devices=devices[:math.prod(shape)])


def num_shards(mesh, sharding, logical):
  """How many pieces the mesh axes of `logical` split a dimension into."""
  return math.prod(mesh.shape[a] for a in sharding[logical])


def vocab_multiple(config, mesh):
  """The row multiple of every embedding table: its shards with pad_vocab, else 1 (and
  then every table must divide, or this raises naming the feature and the fields)."""
  shards = num_shards(mesh, config.sharding, 'vocab')
  if config.sharding.pad_vocab:
    return shards
  for i, f in enumerate(config.feature_configs):
    rows = vocab_size(f) or (1 if f.embedding_dim else 0)
    if rows and rows % shards:
      raise ValueError(
          f'feature_configs[{i}] ({f.feature_name}): table '
          f'{f.embedding_name or f.feature_name!r} has {rows} rows, which do not divide over '
          f'sharding.vocab {tuple(config.sharding.vocab)} = {shards} devices; make its '
          f'vocabulary a multiple of {shards} or set sharding.pad_vocab = True')
  return 1


def declared_axes(variables):
  """The logical axes every leaf of `variables` (model.init's, boxed) declares where it is
  created (models/layers.py), as a tree of PartitionSpecs of axis names; this is the only
  place a parameter's role comes from. Raises naming any leaf that declares none."""
  boxed = lambda x: isinstance(x, nn.LogicallyPartitioned)
  leaves = jax.tree_util.tree_leaves_with_path(variables, is_leaf=boxed)
  undeclared = [jax.tree_util.keystr(path) for path, x in leaves if not boxed(x)]
  if undeclared:
    raise ValueError(f'{", ".join(undeclared)}: created without logical axes; declare them '
                     'where the variable is created (models/layers.py `declared`)')
  return jax.tree.map(lambda x: P(*x.names), variables, is_leaf=boxed)


def is_table(axes):
  """An embedding table (or a moment of one): its rows are the vocabulary."""
  return tuple(axes)[:1] == ('vocab',)


def is_kernel(axes):
  """A dense kernel, plain [D, H] or stacked [E, D, H]: inputs 'embed', outputs 'mlp'."""
  return tuple(axes)[-2:] == ('embed', 'mlp')


def spec_for(mesh, sharding, name, shape, axes, notes):
  """The PartitionSpec of one array of logical `axes`; a dimension that does not divide
  over its mesh axes stays whole, noted in `notes` (tables never get there: they are
  padded or rejected). Empty axes: replicated (steps, keys, counts)."""
  if len(axes) not in (0, len(shape)):
    raise ValueError(f'{name}: declares axes {tuple(axes)} for shape {tuple(shape)}')
  spec, used = [], set()
  for dim, logical in zip(shape, axes or (None,) * len(shape)):
    mesh_axes = tuple(a for a in (sharding[logical] if logical else ()) if a not in used)
    n = math.prod(mesh.shape[a] for a in mesh_axes)
    if dim % n:
      if logical == 'vocab':
        raise ValueError(f'{name}: {dim} rows do not divide over sharding.vocab '
                         f'({n} devices); build the model with vocab_multiple(config, mesh)')
      notes.append(f'{name} {tuple(shape)}: {logical} dim {dim} does not divide over '
                   f'sharding.{logical} {mesh_axes} ({n}); kept whole')
      mesh_axes = ()
    used.update(mesh_axes)
    spec.append(mesh_axes[0] if len(mesh_axes) == 1 else (mesh_axes or None))
  return P(*spec)


def state_sharding(mesh, sharding, abstract_state, axes):
  """NamedShardings of a train state (a tree like `abstract_state`) from the logical
  `axes` of its leaves (a tree like it of PartitionSpecs), and the notes on dimensions
  kept whole."""
  notes = []

  def one(path, leaf, logical):
    name = jax.tree_util.keystr(path)
    return NamedSharding(mesh, spec_for(mesh, sharding, name, leaf.shape, logical, notes))

  return jax.tree_util.tree_map_with_path(one, abstract_state, axes), notes


def batch_sharding(mesh, sharding):
  """Rows of every batch array split over sharding.batch; other dims whole."""
  return NamedSharding(mesh, P(tuple(sharding.batch) or None))


def check_batch(config, mesh):
  shards = num_shards(mesh, config.sharding, 'batch')
  if config.data_config.batch_size % shards:
    raise ValueError(f'data_config.batch_size: {config.data_config.batch_size} rows do not divide '
                     f'over sharding.batch {tuple(config.sharding.batch)} = {shards} devices')


def with_replica_axis(shardings, sharding, num_replicas):
  """The shardings of the same tree with a leading [R] replica axis (a vmapped sweep):
  R split over sharding.replica, whose mesh axes then leave the inner dimensions."""
  replica = tuple(sharding.replica)

  def one(s):
    n = math.prod(s.mesh.shape[a] for a in replica)
    if num_replicas % n:
      raise ValueError(f'{num_replicas} replicas do not divide over sharding.replica {replica} '
                       f'({n} devices)')
    inner = []
    for entry in s.spec:
      axes = tuple(a for a in ((entry,) if isinstance(entry, str) else entry or ())
                   if a not in replica)
      inner.append(axes[0] if len(axes) == 1 else (axes or None))
    return NamedSharding(s.mesh, P(replica or None, *inner))

  return jax.tree.map(one, shardings)


def process_rows(sharding, rows):
  """The slice of a global batch's `rows` that this process's devices hold (multi-host:
  each process builds only those rows)."""
  spans = {(s[0].start or 0, rows if s[0].stop is None else s[0].stop)
           for s in sharding.addressable_devices_indices_map((rows,)).values()}
  start, stop = min(a for a, _ in spans), max(b for _, b in spans)
  if sum(b - a for a, b in spans) != stop - start:
    raise ValueError('this process holds rows of the batch that are not contiguous; order the '
                     'mesh devices by process')
  return slice(start, stop)


def global_batch(local, sharding, rows):
  """One global batch array per leaf, from this process's rows of it."""
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, x, (rows,) + x.shape[1:]), local)


def describe(mesh, state_shardings, abstract_state, axes, vocab_rows):
  """Log lines: the mesh, then every table's global shape, spec and per-device shard."""
  lines = [f'mesh {dict(mesh.shape)} over {mesh.devices.size} of {jax.device_count()} devices']
  for (path, leaf), sharding, logical in zip(
      jax.tree_util.tree_leaves_with_path(abstract_state['params']),
      jax.tree.leaves(state_shardings['params']), jax.tree.leaves(axes['params'])):
    if not is_table(logical):
      continue
    name = path[-1].key  # a table is named by its embedding_name
    pad = leaf.shape[0] - vocab_rows[name]
    lines.append(f'table {name}: {tuple(leaf.shape)} {sharding.spec}, per device '
                 f'{sharding.shard_shape(leaf.shape)}'
                 + (f' ({vocab_rows[name]} rows + {pad} zero padding rows)' if pad else ''))
  return lines


__all__ = ['initialize_distributed', 'make_mesh', 'vocab_multiple', 'state_sharding',
           'batch_sharding', 'with_replica_axis', 'process_rows', 'global_batch', 'describe',
           'declared_axes', 'is_table', 'is_kernel', 'check_batch']
