"""Fills EasyRec's defaults into a partial config and rejects fields it does not know."""

import difflib

import ml_collections

from mmoe_jax.config import schema


class ConfigError(ValueError):
  """A config problem; the message starts with the field path."""


def complete(raw, message=schema.PIPELINE, path=''):
  """Returns a ConfigDict holding every field of `message`, defaults filled in.

  Args:
    raw: a dict or ConfigDict with some of the message's fields.
    message: the schema.Message that `raw` instantiates.
    path: the field path of `raw`, for error messages.

  Raises:
    ConfigError: a field that the message does not have (with a suggestion),
      a missing required field, a value of the wrong type, or a oneof with more
      (or, where required, fewer) than one member set.
  """
  raw = _as_dict(raw, path)
  # A named message (a backbone block) is named in its errors: indices alone are hard to read.
  named = f" ({message.name} {raw['name']!r})" if isinstance(raw.get('name'), str) else ''
  for key in raw:
    if key not in message.fields:
      raise ConfigError(
          f"{_join(path, key)}{named}: unknown field of {message.name}"
          f"{did_you_mean(key, message.fields)}; known fields: {', '.join(message.fields)}")
  set_oneof = [k for k in message.oneof if raw.get(k) is not None]
  if len(set_oneof) > 1 or (message.oneof_required and not set_oneof):
    raise ConfigError(
        f"{path or 'config'}{named}: set exactly one of {', '.join(message.oneof)} "
        f"(got {', '.join(set_oneof) or 'none'})")
  out = {}
  for key, spec in message.fields.items():
    if key in message.oneof and key not in set_oneof:
      continue
    value = raw.get(key)
    field_path = _join(path, key)
    if isinstance(spec, schema.Optional):
      if value is not None and isinstance(spec.message, schema.Message):
        out[key] = complete(value, spec.message, field_path)
      elif value is not None:  # an optional scalar
        out[key] = _scalar(value, spec.message, field_path)
    elif isinstance(spec, schema.Message):
      out[key] = complete(value or {}, spec, field_path)
    elif isinstance(spec, schema.Repeated):
      out[key] = _repeated(spec.default if value is None else value, spec.item, field_path)
    elif value is None:
      if isinstance(spec, schema.Required):
        raise ConfigError(f'{field_path}{named}: required field of {message.name} is missing')
      out[key] = spec
    else:
      out[key] = _scalar(value, spec.kind if isinstance(spec, schema.Required) else type(spec),
                         field_path)
  return ml_collections.ConfigDict(out)


def did_you_mean(name, known):
  hint = difflib.get_close_matches(name, list(known), n=1)
  return f" (did you mean '{hint[0]}'?)" if hint else ''


def _as_dict(raw, path):
  if isinstance(raw, ml_collections.ConfigDict):
    return raw.to_dict()
  if isinstance(raw, dict):
    return raw
  raise ConfigError(f'{path or "config"}: expected a message (dict), got {raw!r}')


def _repeated(value, item, path):
  if value is None:
    return ()
  if not isinstance(value, (list, tuple)):
    value = (value,)  # a single value stands for a one-element repeated field
  if isinstance(item, schema.Message):
    return tuple(complete(v, item, f'{path}[{i}]') for i, v in enumerate(value))
  return tuple(_scalar(v, item, f'{path}[{i}]') for i, v in enumerate(value))


def _scalar(value, kind, path):
  if kind is float and type(value) is int:
    return float(value)
  if (type(value) is bool) != (kind is bool) or not isinstance(value, kind):
    raise ConfigError(f'{path}: expected {kind.__name__}, got {value!r}')
  return value


def _join(path, key):
  return f'{path}.{key}' if path else key
