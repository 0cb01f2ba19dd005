"""The reproduction's controls (its pruning/tools.py), each on one pruned kernel:
`fn(kernel, mask, rng) -> (kernel, mask)` in NumPy, per-kernel counts unchanged. Their entries
are in tfrewind.registries.CONTROLS."""


def shuffle_masks(kernel, mask, rng):
  """Weights intact, the mask's positions permuted."""
  return kernel, rng.permutation(mask.reshape(-1)).reshape(mask.shape)


def shuffle_weights(kernel, mask, rng):
  """The mask intact, the kept weights' values permuted among the kept positions."""
  kernel = kernel.copy()
  kept = mask > 0
  kernel[kept] = rng.permutation(kernel[kept])
  return kernel, mask


def shuffle_layers(kernel, mask, rng):
  """Weights and mask permuted together (one permutation)."""
  order = rng.permutation(mask.size)
  return (kernel.reshape(-1)[order].reshape(kernel.shape),
          mask.reshape(-1)[order].reshape(mask.shape))
