"""`tfrewind.slim`: a channel-pruned network with its pruned channels physically removed.

  >>> model = tfrewind.prunable(tfrewind.build_model("resnet20"), structure="channel")
  >>> tfrewind.prune(model, 0.5, structure="channel")
  >>> small = tfrewind.slim(model)     # an ordinary tf_keras model, fewer channels

Which channels go is decided by `tfrewind.pruning.channels.plan`: every channel
that is exactly zero wherever a Conv/Dense reads it. That covers every channel
pruned inside a residual block (conv1 -> BatchNorm -> ReLU -> conv2) and a
residual stage's channel when every layer writing into the stage prunes it; a
channel pruned in only some of a stage's writers still carries the shortcut, so
it stays (its weights are zeros). The slim model computes what the masked model
computes in inference, to float rounding (fewer terms are summed).
"""

from typing import Optional

import tf_keras as keras
from tfrewind.pruning import channels, sparsity
from tfrewind.errors import ConfigError


def slim(model: keras.Model, stripped: Optional[keras.Model] = None) -> keras.Model:
  """A new tf_keras model without the removable channels of `model` (weights copied).

  Args:
    model: a prunable model (pruned with structure="channel" for channels to
      go), or a plain functional one.
    stripped: `tfrewind.strip(model)`, when the caller has it already (it is slow to redo).

  Raises:
    ValueError: for a subclassed model or one with nested models.
  """
  if any(isinstance(l, keras.Model) for l in model.layers):
    raise ConfigError(f"slim needs a flat functional model; {model.name!r} nests models")
  plan = channels.plan(model)
  source = stripped if stripped is not None else sparsity.strip(model)
  # The stripped model shares its layers' weights and names with `model`.
  by_name = {l.name: l for l in source.layers}

  def rebuild(layer):
    config = layer.get_config()
    if layer.name in plan.outputs and not plan.outputs[layer.name].all():
      config["filters" if "filters" in config else "units"] = int(plan.outputs[layer.name].sum())
    return type(layer).from_config(config)

  result = keras.models.clone_model(source, clone_function=rebuild)
  for layer in result.layers:
    old = by_name[layer.name]
    weights = old.get_weights()
    if layer.name in plan.outputs:
      in_keep, out_keep = plan.inputs[layer.name], plan.outputs[layer.name]
      kernel = weights[0][..., in_keep, :][..., out_keep]
      weights = [kernel] + [w[out_keep] for w in weights[1:]]
    elif layer.name in plan.norms:
      weights = [w[plan.norms[layer.name]] for w in weights]
    layer.set_weights(weights)
  result._name = f"{model.name}_slim"  # pylint: disable=protected-access
  return result

