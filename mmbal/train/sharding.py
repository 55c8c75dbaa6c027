"""Device mesh and shardings: a data axis for the batch, an optional model axis for params."""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P


def make_mesh(data: int = -1, model: int = 1, devices=None) -> jax.sharding.Mesh:
  """A ``("data", "model")`` mesh; ``data=-1`` takes every device the model axis leaves."""
  devices = list(jax.devices() if devices is None else devices)
  if model < 1 or len(devices) % model:
    raise ValueError(f"mesh.model={model} must divide the {len(devices)} devices")
  data = len(devices) // model if data == -1 else data
  if data * model > len(devices):
    raise ValueError(f"mesh data={data} x model={model} needs {data * model} devices, "
                     f"have {len(devices)}")
  return jax.make_mesh((data, model), ("data", "model"), axis_types=(AxisType.Auto,) * 2,
                       devices=devices[:data * model])


def param_sharding(mesh, params):
  """Replicated params, or, with a model axis, each leaf split along its largest divisible dim."""
  size = mesh.shape["model"]

  def spec(x):
    if size == 1 or x.ndim < 2:
      return NamedSharding(mesh, P())
    dims = [d for d in np.argsort(x.shape)[::-1] if x.shape[d] % size == 0]
    if not dims:
      return NamedSharding(mesh, P())
    parts = [None] * x.ndim
    parts[dims[0]] = "model"
    return NamedSharding(mesh, P(*parts))

  return jax.tree.map(spec, params)


def batch_sharding(mesh):
  return NamedSharding(mesh, P("data"))


def replicated(mesh):
  return NamedSharding(mesh, P())


def global_batch(mesh, local_batch: dict) -> dict:
  """Assembles this process's numpy batch into global arrays sharded over ``data``."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local_batch.items()}
