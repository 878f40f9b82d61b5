"""Synthetic toy clips: a shape sliding over a textured, noisy background.

Each clip shows one shape (disk, square or diamond) of random size and colour moving at constant
speed in one of four directions over a static texture of random stripes, with fresh sensor noise in
every frame. The label is the direction of motion:

    0 right    1 left    2 down    3 up

Everything a single frame shows -- texture, shape, colour, size, start position, the noise -- is
drawn before and independently of the label, and the shape wraps around the frame edges (the
scene is a torus), so no start position favours a direction. The first frame is therefore the same
for all four labels: only motion tells them apart (``render`` takes the directions as an argument,
which is how the tests check this).

Clips come out like the image processor's output: frames in [0, 1], normalised per channel with
mean = std = 0.5 (IMAGENET_STANDARD), laid out (B, T, C, H, W) float32.

A batch is a pure function of (seed, step, batch size): ``batch_at`` draws from
``np.random.default_rng([seed, step])``, so a training run that resumes at step s sees exactly the
batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

LABELS = ("right", "left", "down", "up")
# unit velocity (dx, dy) per label; y grows downwards as in an image
DIRECTIONS = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
SHAPES = ("disk", "square", "diamond")
PROCESSOR_MEAN = PROCESSOR_STD = 0.5   # IMAGENET_STANDARD, the VideoMAE image processor's default


@dataclass(frozen=True)
class ToySpec:
    """What the clips look like. The defaults match the toy model (8 frames of 16x16 RGB)."""
    frames: int = 8
    size: int = 16                 # height = width in pixels
    channels: int = 3
    speed: tuple = (0.75, 1.5)     # pixels per frame, uniform
    radius: tuple = (2.5, 4.0)     # half-width of the shape in pixels, uniform
    stripes: int = 2               # sinusoidal gratings summed into the background texture
    period: int = 4                # the texture repeats every `period` pixels (the patch size)
    harmonics: int = 2             # grating frequencies are -h..h cycles per period in x and y
    contrast: float = 0.15         # amplitude of the texture around its base colour
    base: tuple = (0.3, 0.7)       # background base colour, uniform per channel
    colour: tuple = (0.0, 1.0)     # shape colour, uniform per channel
    noise: float = 0.03            # std of the per-frame Gaussian pixel noise (in [0, 1] units)

    def to_dict(self):
        return asdict(self)


def normalise(frames):
    """[0, 1] frames -> the processor's pixel_values convention (mean = std = 0.5)."""
    return ((frames - PROCESSOR_MEAN) / PROCESSOR_STD).astype(np.float32)


def denormalise(pixel_values):
    """The inverse of :func:`normalise`, clipped to [0, 1] for display."""
    return np.clip(np.asarray(pixel_values, np.float64) * PROCESSOR_STD + PROCESSOR_MEAN, 0.0, 1.0)


@dataclass
class Scenes:
    """Everything about a batch of clips except the direction of motion; all arrays lead with B."""
    background: np.ndarray   # (B, C, S, S) in [0, 1]
    shape: np.ndarray        # (B,) index into SHAPES
    colour: np.ndarray       # (B, C)
    radius: np.ndarray       # (B,)
    start: np.ndarray        # (B, 2) centre (x, y) at frame 0
    speed: np.ndarray        # (B,)
    noise: np.ndarray        # (B, T, C, S, S) standard normal


def draw_scenes(rng, batch, spec: ToySpec = ToySpec()) -> Scenes:
    """Draw the label-independent part of `batch` clips."""
    S, C, T = spec.size, spec.channels, spec.frames
    yy, xx = np.mgrid[0:S, 0:S] / S                                         # (S, S) in [0, 1)
    # texture: a base colour plus `stripes` gratings whose wave vectors are whole multiples of
    # 1/period in x and y, so the texture repeats every `period` pixels in both directions: with
    # period = patch size every background patch looks alike, as far as the noise lets it, and a
    # masked one can be told from the visible ones (the predictable part of the reconstruction)
    k = spec.stripes
    fx = rng.integers(-spec.harmonics, spec.harmonics + 1, (batch, k))
    fy = rng.integers(-spec.harmonics, spec.harmonics + 1, (batch, k))
    fy = np.where((fx == 0) & (fy == 0), 1, fy)                              # no flat gratings
    phase = rng.uniform(0.0, 2 * np.pi, (batch, k))
    weights = rng.uniform(-1.0, 1.0, (batch, k, C))
    base = rng.uniform(*spec.base, (batch, C))
    arg = (fx[:, :, None, None] * xx + fy[:, :, None, None] * yy) * (S / spec.period)
    waves = np.sin(2 * np.pi * arg + phase[:, :, None, None])               # (B, k, S, S)
    texture = np.einsum("bkyx,bkc->bcyx", waves, weights) / k
    background = np.clip(base[:, :, None, None] + spec.contrast * texture, 0.0, 1.0)
    return Scenes(
        background=background,
        shape=rng.integers(0, len(SHAPES), batch),
        colour=rng.uniform(*spec.colour, (batch, C)),
        radius=rng.uniform(*spec.radius, batch),
        start=rng.uniform(0.0, S, (batch, 2)),
        speed=rng.uniform(*spec.speed, batch),
        noise=rng.standard_normal((batch, T, C, S, S)),
    )


def render(scenes: Scenes, labels, spec: ToySpec = ToySpec()):
    """Scenes + directions (B,) -> clips (B, T, C, S, S) float32, processor-normalised."""
    labels = np.asarray(labels)
    S, T = spec.size, spec.frames
    t = np.arange(T)
    velocity = DIRECTIONS[labels] * scenes.speed[:, None]                   # (B, 2)
    centre = scenes.start[:, None, :] + velocity[:, None, :] * t[None, :, None]   # (B, T, 2)
    pix = np.arange(S) + 0.5                                                 # pixel centres
    # signed offsets on the torus: the shape leaving one edge enters at the opposite one
    dx = (pix[None, None, None, :] - centre[:, :, 0, None, None] + S / 2) % S - S / 2   # (B, T, 1, S)
    dy = (pix[None, None, :, None] - centre[:, :, 1, None, None] + S / 2) % S - S / 2   # (B, T, S, 1)
    ax, ay = np.abs(dx), np.abs(dy)
    dist = np.where(scenes.shape[:, None, None, None] == 0, np.sqrt(dx * dx + dy * dy),
                    np.where(scenes.shape[:, None, None, None] == 1, np.maximum(ax, ay),
                             (ax + ay) / np.sqrt(2.0)))                      # (B, T, S, S)
    # coverage with a one-pixel soft edge, so sub-pixel motion is visible
    cover = np.clip(scenes.radius[:, None, None, None] - dist + 0.5, 0.0, 1.0)[:, :, None]  # (B, T, 1, S, S)
    frames = (scenes.background[:, None] * (1.0 - cover)
              + scenes.colour[:, None, :, None, None] * cover
              + spec.noise * scenes.noise)
    return normalise(np.clip(frames, 0.0, 1.0))


def balanced_labels(rng, batch, num_classes=len(LABELS)):
    """A shuffled batch holding every class equally often (up to batch % num_classes)."""
    return rng.permutation(np.arange(batch) % num_classes)


def batch_at(seed: int, step: int, batch_size: int, spec: ToySpec = ToySpec()):
    """The clips of batch `step` of the stream `seed`: (pixel_values (B, T, C, S, S), labels (B,)).

    A pure function of its arguments: nothing is carried over from earlier batches.
    """
    rng = np.random.default_rng([int(seed), int(step)])
    scenes = draw_scenes(rng, batch_size, spec)
    labels = balanced_labels(rng, batch_size)
    return render(scenes, labels, spec), labels


def stream(seed: int, batch_size: int, start: int = 0, stop: int | None = None,
           spec: ToySpec = ToySpec()):
    """Yield (pixel_values, labels) for steps start, start + 1, ... (forever when stop is None)."""
    step = start
    while stop is None or step < stop:
        yield batch_at(seed, step, batch_size, spec)
        step += 1


def make_dataset(num_clips: int, seed: int, spec: ToySpec = ToySpec(), chunk: int = 256):
    """A fixed labelled set of `num_clips` clips (balanced classes): (pixel_values, labels).

    Drawn in chunks of `chunk` clips from the stream `seed` (chunk i is ``batch_at(seed, i, ...)``),
    which bounds the scratch memory of large sets.
    """
    xs, ys = [], []
    for i, lo in enumerate(range(0, num_clips, chunk)):
        x, y = batch_at(seed, i, min(chunk, num_clips - lo), spec)
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)
