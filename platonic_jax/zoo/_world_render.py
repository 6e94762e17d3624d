"""A procedurally generated world seen through two modalities: image and caption.

Each sample is a latent scene: `count` identical objects of one shape, colour
and size, clustered around a point in one quadrant of the canvas. The scene is
rendered to a small RGB image (random background gradient, achromatic clutter,
pixel noise: nuisances of the image only) and described by a caption (one of
several templates, synonyms, optional filler words: nuisances of the caption
only). Both modalities carry every attribute; they share nothing else, which
is what makes cross-modal alignment measurable against the true latent.

Everything is a pure function of `(seed, split)`; no global state.
"""

from __future__ import annotations

import dataclasses

import numpy as np

SHAPES = ("square", "circle", "triangle", "cross")
COLOURS = ("red", "green", "blue", "yellow", "magenta", "cyan")
SIZES = ("small", "medium", "large")
COUNTS = (1, 2, 3, 4)
POSITIONS = ("top left", "top right", "bottom left", "bottom right")

# Target key -> number of classes. Order fixes the target column order.
TARGETS = {
    "target_shape": len(SHAPES),
    "target_colour": len(COLOURS),
    "target_size": len(SIZES),
    "target_count": len(COUNTS),
    "target_position": len(POSITIONS),
}

# Latent layout: one-hot shape, one-hot colour, radius, count, centre x, y.
LATENT_NAMES = (
    tuple(f"shape={s}" for s in SHAPES)
    + tuple(f"colour={c}" for c in COLOURS)
    + ("radius", "count", "centre_x", "centre_y"))
LATENT_DIM = len(LATENT_NAMES)



def class_names() -> dict[str, tuple[str, ...]]:
  """Target key -> class names (index = class id)."""
  return {"target_shape": SHAPES, "target_colour": COLOURS, "target_size": SIZES,
          "target_count": tuple(str(c) for c in COUNTS), "target_position": POSITIONS}


_RGB = np.array([[225, 40, 40], [40, 200, 60], [50, 80, 235], [235, 215, 40],
                 [220, 50, 220], [40, 215, 225]], np.float32)
# Radius bands per size class, in units of the image height.
_RADIUS_BANDS = np.array([[0.070, 0.090], [0.115, 0.135], [0.160, 0.180]], np.float32)
# Cluster layouts (offsets in radii) for 1..4 objects.
_LAYOUTS = np.array([
    [[0, 0], [0, 0], [0, 0], [0, 0]],
    [[-1.15, 0], [1.15, 0], [0, 0], [0, 0]],
    [[-1.15, 1.0], [1.15, 1.0], [0, -1.0], [0, 0]],
    [[-1.15, -1.15], [1.15, -1.15], [-1.15, 1.15], [1.15, 1.15]],
], np.float32)
_NUM_CLUTTER = 5


@dataclasses.dataclass(frozen=True)
class WorldScenes:
  """Latent scenes `[N]`: discrete attributes and their continuous values."""
  shape: np.ndarray    # int64 [N]
  colour: np.ndarray   # int64 [N]
  size: np.ndarray     # int64 [N]
  count: np.ndarray    # int64 [N], class index (count - 1)
  position: np.ndarray  # int64 [N], quadrant
  radius: np.ndarray   # float32 [N], fraction of the image height
  centre: np.ndarray   # float32 [N, 2], (x, y) in [0, 1]

  def latent(self) -> np.ndarray:
    """The latent vector float32 `[N, LATENT_DIM]` in `LATENT_NAMES` order."""
    return np.concatenate([
        np.eye(len(SHAPES), dtype=np.float32)[self.shape],
        np.eye(len(COLOURS), dtype=np.float32)[self.colour],
        self.radius[:, None],
        (self.count + 1).astype(np.float32)[:, None] / len(COUNTS),
        self.centre,
    ], axis=1)

  def targets(self) -> dict[str, np.ndarray]:
    """One int64 `[N]` target per attribute, keyed as in `TARGETS`."""
    return {"target_shape": self.shape, "target_colour": self.colour,
            "target_size": self.size, "target_count": self.count,
            "target_position": self.position}


def sample_scenes(rng: np.random.Generator, n: int) -> WorldScenes:
  """Draws `n` independent scenes, every attribute uniform. Cost: O(n)."""
  shape = rng.integers(0, len(SHAPES), n)
  colour = rng.integers(0, len(COLOURS), n)
  size = rng.integers(0, len(SIZES), n)
  count = rng.integers(0, len(COUNTS), n)
  position = rng.integers(0, len(POSITIONS), n)
  low, high = _RADIUS_BANDS[size].T
  radius = (low + (high - low) * rng.random(n)).astype(np.float32)
  # Centre inside its quadrant, kept away from the midlines so the quadrant is unambiguous.
  within = 0.16 + 0.18 * rng.random((n, 2))
  right, bottom = position % 2, position // 2
  centre = np.stack([np.where(right, 1 - within[:, 0], within[:, 0]),
                     np.where(bottom, 1 - within[:, 1], within[:, 1])], 1).astype(np.float32)
  return WorldScenes(shape, colour, size, count, position, radius, centre)


def _shape_sdf(shape: int, dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
  """Signed distance in pixels (negative inside) to one shape, elementwise."""
  ax, ay = np.abs(dx), np.abs(dy)
  if SHAPES[shape] == "square":
    return np.maximum(ax, ay) - 0.85 * r
  if SHAPES[shape] == "circle":
    return np.sqrt(dx * dx + dy * dy) - r
  if SHAPES[shape] == "triangle":
    # Apex (0, -r), base corners (+-0.9r, 0.8r); image y grows downwards.
    return np.maximum(dy - 0.8 * r, (1.8 * ax - 0.9 * (dy + r)) / np.hypot(1.8, 0.9))
  arm = 0.33 * r  # cross
  return np.minimum(np.maximum(ax - arm, ay - r), np.maximum(ay - arm, ax - r))


def render_images(scenes: WorldScenes, rng: np.random.Generator, size: int) -> np.ndarray:
  """Renders scenes to uint8 RGB images `[N, size, size, 3]`.

  Nuisances (image only): a random grey-level background with a linear
  gradient, `_NUM_CLUTTER` achromatic specks and bars, per-object jitter of
  position and brightness, Gaussian pixel noise. Cost: O(N size^2) time and
  memory (vectorised over all samples and objects).
  """
  n = scenes.shape.shape[0]
  coords = np.arange(size, dtype=np.float32) + 0.5
  ys, xs = coords[None, :, None], coords[None, None, :]

  # Background: grey level plus a gradient in a random direction.
  base = rng.uniform(40, 120, (n, 1, 1))
  grad = rng.uniform(-35, 35, (n, 2))
  image = base + grad[:, 0, None, None] * (xs / size - 0.5) + grad[:, 1, None, None] * (ys / size - 0.5)
  image = np.repeat(image[..., None].astype(np.float32), 3, axis=-1)

  # Clutter: small achromatic rectangles (specks and thin bars) anywhere.
  cx, cy = rng.uniform(0, size, (2, n, _NUM_CLUTTER, 1, 1))
  hw = rng.uniform(0.5, 3.0, (n, _NUM_CLUTTER, 1, 1))
  hh = np.where(rng.random((n, _NUM_CLUTTER, 1, 1)) < 0.5, 0.6, hw)
  inside = (np.abs(xs[:, None] - cx) <= hw) & (np.abs(ys[:, None] - cy) <= hh)
  grey = rng.uniform(0, 255, (n, _NUM_CLUTTER, 1, 1)).astype(np.float32)
  for k in range(_NUM_CLUTTER):  # later clutter paints over earlier clutter
    image = np.where(inside[:, k, ..., None], grey[:, k, ..., None], image)

  # Objects: slots beyond the count are pushed off-canvas.
  radius_px = scenes.radius * size
  offsets = _LAYOUTS[scenes.count] * radius_px[:, None, None]           # [N, 4, 2]
  centres = scenes.centre[:, None, :] * size + offsets
  centres += 0.06 * rng.standard_normal(centres.shape, np.float32) * radius_px[:, None, None]
  present = np.arange(len(COUNTS))[None, :] <= scenes.count[:, None]     # [N, 4]
  centres = np.where(present[..., None], centres, np.float32(-10.0 * size))
  dx = xs[:, None] - centres[:, :, 0, None, None]
  dy = ys[:, None] - centres[:, :, 1, None, None]
  dx, dy = np.broadcast_arrays(dx, dy)
  r = radius_px[:, None, None, None]
  sdf = np.empty(dx.shape, np.float32)
  for shape in range(len(SHAPES)):
    rows = scenes.shape == shape
    sdf[rows] = _shape_sdf(shape, dx[rows], dy[rows], r[rows])
  coverage = np.clip(0.5 - sdf.min(axis=1), 0.0, 1.0)[..., None]       # [N, H, W, 1]
  brightness = rng.uniform(0.8, 1.0, (n, 1, 1, 1))
  colour = _RGB[scenes.colour][:, None, None, :] * brightness
  image = image * (1 - coverage) + colour * coverage

  image += 10.0 * rng.standard_normal(image.shape, np.float32)
  return np.clip(np.rint(image), 0, 255).astype(np.uint8)


# --- captions ---------------------------------------------------------------

# Per shape: (singular, plural) pairs of its synonyms.
_SHAPE_WORDS = (
    (("square", "squares"), ("box", "boxes"), ("block", "blocks")),
    (("circle", "circles"), ("disc", "discs"), ("ball", "balls")),
    (("triangle", "triangles"), ("wedge", "wedges")),
    (("cross", "crosses"), ("plus", "pluses")),
)
_COLOUR_WORDS = (("red", "crimson", "scarlet"), ("green", "emerald"), ("blue", "navy", "azure"),
                 ("yellow", "golden"), ("magenta", "pink", "purple"), ("cyan", "turquoise"))
_SIZE_WORDS = (("small", "tiny", "little"), ("medium", "mid-sized", "average-sized"),
               ("large", "big", "huge"))
_COUNT_WORDS = (("one", "a", "a single"), ("two", "a pair of"), ("three",), ("four",))
_POSITION_WORDS = (("top left", "upper left"), ("top right", "upper right"),
                   ("bottom left", "lower left"), ("bottom right", "lower right"))
_OPENERS = ("", "", "a picture of", "an image with", "we see", "this scene shows", "look :")
_TEMPLATES = (
    "{opener} {count} {size} {colour} {shape} in the {position} {corner}",
    "{opener} in the {position} {corner} there {be} {count} {colour} {shape} , {size}",
    "{count} {shape} , {size} and {colour} , {located} the {position} {corner}",
    "{located} the {position} {corner} : {count} {size} {colour} {shape}",
    "{opener} {count} {colour} {shape} of {size} size {located} the {position}",
)
_FILLERS = ("corner", "part", "area", "")
_LOCATED = ("in", "at", "located in", "placed in", "sitting in")


def _vocabulary() -> tuple[str, ...]:
  """Every word any caption can contain; index + 1 is its token id (0 pads)."""
  texts = [w for group in (_COLOUR_WORDS, _SIZE_WORDS, _COUNT_WORDS, _POSITION_WORDS) for ws in group
           for w in ws]
  texts += [w for forms in _SHAPE_WORDS for pair in forms for w in pair]
  texts += list(_OPENERS) + list(_TEMPLATES) + list(_FILLERS) + list(_LOCATED) + ["is", "are"]
  words = {w for text in texts for w in text.split() if not w.startswith("{")}
  return tuple(sorted(words))


VOCABULARY = _vocabulary()
VOCAB_SIZE = len(VOCABULARY) + 1  # token 0 is padding
CAPTION_LENGTH = 20
_TOKEN = {w: i + 1 for i, w in enumerate(VOCABULARY)}


def _choice(rng: np.random.Generator, options):
  return options[rng.integers(len(options))]


def _caption_text(rng: np.random.Generator, shape: int, colour: int, size: int, count: int,
                  position: int) -> str:
  plural = count > 0
  text = _choice(rng, _TEMPLATES).format(
      opener=_choice(rng, _OPENERS),
      count=_choice(rng, _COUNT_WORDS[count]),
      size=_choice(rng, _SIZE_WORDS[size]),
      colour=_choice(rng, _COLOUR_WORDS[colour]),
      shape=_choice(rng, _SHAPE_WORDS[shape])[int(plural)],
      position=_choice(rng, _POSITION_WORDS[position]),
      corner=_choice(rng, _FILLERS),
      located=_choice(rng, _LOCATED),
      be="are" if plural else "is")
  return " ".join(text.split())


def caption_tokens(scenes: WorldScenes, rng: np.random.Generator) -> np.ndarray:
  """Token ids int32 `[N, CAPTION_LENGTH]`, 0-padded on the right. Cost: O(N T)."""
  n = scenes.shape.shape[0]
  tokens = np.zeros((n, CAPTION_LENGTH), np.int32)
  for i in range(n):
    words = _caption_text(rng, int(scenes.shape[i]), int(scenes.colour[i]), int(scenes.size[i]),
                          int(scenes.count[i]), int(scenes.position[i])).split()
    tokens[i, :len(words)] = [_TOKEN[w] for w in words]
  return tokens


def caption_text(tokens: np.ndarray) -> str:
  """Decodes one caption `[T]` of token ids back to words (padding dropped)."""
  return " ".join(VOCABULARY[t - 1] for t in np.asarray(tokens) if t > 0)


def generate_world(num_examples: int, seed: int, split_index: int, image_size: int = 24,
                   chunk: int = 2048) -> dict[str, np.ndarray]:
  """Generates one split of the world dataset, deterministically.

  Args:
    num_examples: number of samples N.
    seed: dataset seed; splits draw from the independent stream `(seed, split_index)`.
    split_index: 0 for train, 1 for test (any non-negative int).
    image_size: image height and width in pixels.
    chunk: samples rendered at once (bounds memory at O(chunk * image_size^2)).

  Returns:
    Dict of `image` uint8 `[N, S, S, 3]`, `caption` int32 `[N, CAPTION_LENGTH]`,
    `latent` float32 `[N, LATENT_DIM]`, and the int64 `[N]` targets of `TARGETS`.

  Cost: O(N (image_size^2 + CAPTION_LENGTH)) time.
  """
  if num_examples < 1:
    raise ValueError(f"`num_examples` must be >= 1, got {num_examples}.")
  scene_rng, image_rng, caption_rng = (
      np.random.default_rng([seed, split_index, stream]) for stream in range(3))
  scenes = sample_scenes(scene_rng, num_examples)
  images = np.concatenate([
      render_images(_take(scenes, slice(i, i + chunk)), image_rng, image_size)
      for i in range(0, num_examples, chunk)])
  out = {"image": images, "caption": caption_tokens(scenes, caption_rng),
         "latent": scenes.latent()}
  out.update(scenes.targets())
  return out


def _take(scenes: WorldScenes, index) -> WorldScenes:
  return WorldScenes(*(getattr(scenes, f.name)[index] for f in dataclasses.fields(WorldScenes)))
