"""Training objectives: heads around an encoder, losses, augmentations.

The trainer wraps a zoo encoder (`[B, ...] -> [B, D]`) in a `Trainee` that
adds what the objective needs: one linear head per target (supervised and
multi-task) or a two-layer projector (contrastive). Losses are pure functions
of the trainee, a batch and a PRNG key; the batch dimension may be sharded
over a mesh.
"""

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jaxtyping import Array, Float, Int, UInt8

# NT-Xent temperature and projector width: SimCLR's small-batch settings.
TEMPERATURE = 0.2
PROJECTION_DIM = 32


class Trainee(nnx.Module):
  """An encoder plus the objective's heads (heads never reach the zoo's features)."""

  def __init__(self, encoder: nnx.Module, feature_dim: int, objective: str,
               num_classes: dict[str, int], *, rngs: nnx.Rngs):
    self.encoder = encoder
    self.objective = objective
    if objective == "contrastive":
      self.projector = nnx.Sequential(
          nnx.Linear(feature_dim, feature_dim, rngs=rngs), nnx.relu,
          nnx.Linear(feature_dim, PROJECTION_DIM, rngs=rngs))
    else:
      self.heads = nnx.Dict({t: nnx.Linear(feature_dim, c, rngs=rngs)
                             for t, c in sorted(num_classes.items())})

  def __call__(self, x):
    """Head outputs: {target: logits [B, C]} or the projection [B, PROJECTION_DIM]."""
    features = self.encoder(x)
    if self.objective == "contrastive":
      return self.projector(features)
    return {t: head(features) for t, head in self.heads.items()}


def classification_loss(logits: dict[str, Float[Array, "B C"]],
                        labels: dict[str, Int[Array, " B"]]) -> tuple[jax.Array, dict]:
  """Mean over targets of the softmax cross-entropy; accuracy per target.

  Cost O(B C) per target.
  """
  losses, accuracy = [], {}
  for t, z in logits.items():
    y = labels[t]
    losses.append(optax.softmax_cross_entropy_with_integer_labels(z, y).mean())
    accuracy[t] = (jnp.argmax(z, -1) == y).mean()
  return jnp.mean(jnp.stack(losses)), accuracy


def nt_xent(z1: Float[Array, "B P"], z2: Float[Array, "B P"],
            temperature: float = TEMPERATURE) -> jax.Array:
  """SimCLR's normalised-temperature cross-entropy of two views' projections.

  Each of the 2B projections must pick its partner view among the other
  2B - 1. Cost O(B^2 P).
  """
  z = jnp.concatenate([z1, z2], 0)
  z = z / jnp.linalg.norm(z, axis=-1, keepdims=True).clip(1e-6)
  n = z.shape[0] // 2
  sim = z @ z.T / temperature
  sim = jnp.where(jnp.eye(2 * n, dtype=bool), -1e9, sim)
  partner = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(n)])
  return optax.softmax_cross_entropy_with_integer_labels(sim, partner).mean()


def augment_images(x: UInt8[Array, "B H W C"], key: jax.Array) -> UInt8[Array, "B H W C"]:
  """Cheap image views: a random shift (up to H/8 pixels, zero fill), brightness and noise.

  No flips: a flip changes the world's position attribute and some digits.
  """
  b, h, w, _ = x.shape
  k_shift, k_gain, k_noise = jax.random.split(key, 3)
  s = max(1, h // 8)
  padded = jnp.pad(x, ((0, 0), (s, s), (s, s), (0, 0)))
  offsets = jax.random.randint(k_shift, (b, 2), 0, 2 * s + 1)
  shifted = jax.vmap(lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, x.shape[3])))(
      padded, offsets)
  gain = jax.random.uniform(k_gain, (b, 1, 1, 1), minval=0.8, maxval=1.2)
  noise = jax.random.normal(k_noise, x.shape)
  noisy = shifted.astype(jnp.float32) * gain + 12.0 * noise
  return jnp.clip(jnp.round(noisy), 0, 255).astype(jnp.uint8)


def augment_captions(tokens: Int[Array, "B T"], key: jax.Array,
                     drop_rate: float = 0.15) -> Int[Array, "B T"]:
  """Cheap caption views: local word-order jitter, then token dropout (to padding, 0).

  Tokens move about a position (sort by position + U(0, 2.5)); padding goes
  after the words; the first word of each caption is never dropped, so no
  view is empty.
  """
  k_order, k_drop = jax.random.split(key)
  t = tokens.shape[1]
  position = jnp.arange(t, dtype=jnp.float32)
  jitter = jax.random.uniform(k_order, tokens.shape, maxval=2.5)
  sort_key = jnp.where(tokens > 0, position + jitter, position + 4.0 * t)
  shuffled = jnp.take_along_axis(tokens, jnp.argsort(sort_key, axis=1), axis=1)
  keep = jax.random.bernoulli(k_drop, 1.0 - drop_rate, tokens.shape)
  first_word = (shuffled > 0) & (jnp.cumsum(shuffled > 0, axis=1) == 1)
  keep = keep | first_word
  return jnp.where(keep, shuffled, 0)


def augment(x: jax.Array, key: jax.Array, modality: str) -> jax.Array:
  """One random view of a raw batch of `modality` ('image' or 'caption')."""
  return augment_images(x, key) if modality == "image" else augment_captions(x, key)


def objective_loss(model: Trainee, inputs: jax.Array, labels: dict[str, jax.Array],
                   key: jax.Array, *, modality: str) -> tuple[jax.Array, dict]:
  """The member's training loss on one batch and its per-target accuracies (if any).

  Args:
    model: the trainee (encoder + heads).
    inputs: raw batch, uint8 [B, H, W, C] images or int32 [B, T] token ids.
    labels: {target: int [B]} (unused by the contrastive objective).
    key: PRNG key for augmentations (contrastive only).
    modality: 'image' or 'caption'.

  Returns:
    (scalar loss, {target: accuracy}).
  """
  if model.objective == "contrastive":
    k1, k2 = jax.random.split(key)
    z1 = model(augment(inputs, k1, modality))
    z2 = model(augment(inputs, k2, modality))
    return nt_xent(z1, z2), {}
  return classification_loss(model(inputs), labels)
