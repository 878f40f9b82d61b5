"""Synthetic toy clips: textured shapes that move over a textured, noisy background.

The clips are built so that VideoMAE's premise holds at toy scale (arXiv 2203.12602, section 3):

* neighbouring frames are nearly alike (temporal redundancy): the background is static and the
  objects move smoothly, so a masked patch can often be copied from the same place one frame
  earlier -- what random masking lets a model do and tube masking forbids;
* objects are large (several patches) and travel about one patch per tubelet, so a tube hidden in
  every frame is crossed by an object during the clip and can be predicted only by following
  the object's motion through the visible tubes;
* objects and background carry texture well above the sensor noise, so the per-patch normalised
  targets of ``norm_pix_loss`` are patterns, not amplified noise. The background texture repeats
  every ``period`` pixels (the patch size), so a hidden background patch is predictable from
  visible ones; an object's texture is painted in the object's own coordinates, so it moves
  (turns, grows) with the object.

The label is the kind of motion. ``classes="directions"`` (the default) has four:

    0 right    1 left    2 down    3 up

``classes="motions"`` adds four that no translation explains (Something-Something-like):

    4 clockwise    5 anticlockwise    6 approach (grows)    7 recede (shrinks)

Everything a single frame shows -- texture, shapes, colours, sizes, positions, orientations, the
noise -- is drawn before and independently of the label, and the scene is a torus (an object
leaving one edge enters at the opposite one), so no position favours a label. The first frame is
therefore the same for every label: only motion tells them apart (``render`` takes the labels as
an argument, which is how the tests check this).

Clips come out like the image processor's output: frames in [0, 1], normalised per channel with
mean = std = 0.5 (IMAGENET_STANDARD), laid out (B, T, C, H, W) float32.

A batch is a pure function of (seed, step, batch size, spec): ``batch_at`` draws from
``np.random.default_rng([seed, step])``, so a training run that resumes at step s sees exactly the
batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from .. import kernels, pixels

# The clips' pixel convention is the processor's default (pixels.py); kept importable as toy.*,
# which the notebooks and tests draw clips with.
normalise, denormalise = pixels.normalise, pixels.denormalise

# name -> (dx, dy, spin, zoom): unit velocity (y grows downwards as in an image), the sign of the
# rotation (+1 clockwise on screen) and of the growth
MOTIONS = {
    "right": (1.0, 0.0, 0, 0), "left": (-1.0, 0.0, 0, 0),
    "down": (0.0, 1.0, 0, 0), "up": (0.0, -1.0, 0, 0),
    "clockwise": (0.0, 0.0, 1, 0), "anticlockwise": (0.0, 0.0, -1, 0),
    "approach": (0.0, 0.0, 0, 1), "recede": (0.0, 0.0, 0, -1),
}
CLASS_SETS = {
    "directions": ("right", "left", "down", "up"),
    "motions": tuple(MOTIONS),
}
LABELS = CLASS_SETS["directions"]          # the default class set
SHAPES = ("disk", "square", "diamond")
MOVING = ("objects", "scene")
SCENE_WAVES = 6            # gratings in a moving scene's texture
SCENE_CYCLES = 4           # their frequencies: -4..4 whole cycles across the frame (periods >= 8 px)


@dataclass(frozen=True)
class ToySpec:
    """What the clips look like. The defaults match the toy model (8 frames of 32x32 RGB, 4x4
    patches, tubelets of 2 frames)."""
    frames: int = 8
    size: int = 32                 # height = width in pixels
    channels: int = 3
    classes: str = "directions"    # a key of CLASS_SETS
    moving: str = "objects"        # "objects": shapes move over a static background; "scene": the
                                   # camera moves (pan, roll, zoom) over a textured scene
    objects: int = 2               # shapes per clip, all moving the same way (the label)
    radius: tuple = (6.0, 10.0)    # half-width of a shape in pixels, uniform: 3-5 patches across
    speed: tuple = (1.5, 2.5)      # pixels per frame (translations), uniform: ~1 patch per tubelet
    spin: tuple = (0.15, 0.3)      # radians per frame (rotations), uniform
    zoom: tuple = (0.05, 0.09)     # log-scale change per frame (approach / recede), uniform
    shade: float = 0.3             # amplitude of the linear shading across each shape (a ramp from
                                   # one side to the other, as if lit from one side)
    object_contrast: float = 0.0   # amplitude of a grating painted on each shape
    object_period: tuple = (3.0, 6.0)   # its grating period in pixels, uniform
    stripes: int = 2               # sinusoidal gratings summed into the background texture
    period: int = 4                # the background repeats every `period` pixels (the patch size)
    harmonics: int = 1             # background grating frequencies: -h..h cycles per period
    contrast: float = 0.25         # amplitude of the background texture around its base colour
    base: tuple = (0.25, 0.75)     # background base colour, uniform per channel
    colour: tuple = (0.1, 0.9)     # shape base colour, uniform per channel
    noise: float = 0.02            # std of the per-frame Gaussian pixel noise (in [0, 1] units)

    def __post_init__(self):
        if self.moving not in MOVING:
            raise ValueError(f"toy moving must be one of {', '.join(MOVING)}, got {self.moving!r}")
        if self.classes not in CLASS_SETS:
            raise ValueError(f"toy classes must be one of {sorted(CLASS_SETS)}, got {self.classes!r}")

    @property
    def labels(self):
        return CLASS_SETS[self.classes]

    @property
    def num_classes(self):
        return len(self.labels)

    def to_dict(self):
        return asdict(self)

    @classmethod
    def field_names(cls):
        return tuple(f.name for f in fields(cls))


@dataclass
class Scenes:
    """Everything about a batch of clips except the motion; arrays lead with B (and K objects)."""
    background: np.ndarray   # (B, C, S, S) in [0, 1]
    shape: np.ndarray        # (B, K) index into SHAPES
    colour: np.ndarray       # (B, K, C) base colour of each shape
    radius: np.ndarray       # (B, K)
    start: np.ndarray        # (B, K, 2) centre (x, y) at frame 0
    angle: np.ndarray        # (B, K) orientation at frame 0
    speed: np.ndarray        # (B, K) pixels per frame, if translating
    spin: np.ndarray         # (B, K) radians per frame, if turning
    zoom: np.ndarray         # (B, K) log-scale per frame, if growing or shrinking
    wave: np.ndarray         # (B, K, 2) the shape's grating wave vector (cycles per pixel)
    phase: np.ndarray        # (B, K)
    tint: np.ndarray         # (B, K, C) per-channel weight of the shape's grating
    light: np.ndarray        # (B, K, 2) unit direction of the shading ramp, in the shape's frame
    shade_tint: np.ndarray   # (B, K, C) per-channel sign and weight of the ramp
    scene_cycles: np.ndarray  # (B, G, 2) whole cycles across the frame of a moving scene's gratings
    scene_phase: np.ndarray   # (B, G)
    scene_tint: np.ndarray    # (B, G, C)
    noise: np.ndarray        # (B, T, C, S, S) standard normal


def _background(rng, batch, spec):
    S, C, k = spec.size, spec.channels, spec.stripes
    yy, xx = np.mgrid[0:S, 0:S] / S                                          # (S, S) in [0, 1)
    # gratings whose wave vectors are whole multiples of 1/period in x and y repeat every
    # `period` pixels: with period = patch size every background patch looks alike (up to the
    # noise), so a hidden one is predictable from the visible ones
    fx = rng.integers(-spec.harmonics, spec.harmonics + 1, (batch, k))
    fy = rng.integers(-spec.harmonics, spec.harmonics + 1, (batch, k))
    fy = np.where((fx == 0) & (fy == 0), 1, fy)                               # no flat gratings
    phase = rng.uniform(0.0, 2 * np.pi, (batch, k))
    weights = _signed_weights(rng, (batch, k, C))
    base = rng.uniform(*spec.base, (batch, C))
    arg = (fx[:, :, None, None] * xx + fy[:, :, None, None] * yy) * (S / spec.period)
    waves = np.sin(2 * np.pi * arg + phase[:, :, None, None])                # (B, k, S, S)
    texture = np.einsum("bkyx,bkc->bcyx", waves, weights) / np.sqrt(k)
    return np.clip(base[:, :, None, None] + spec.contrast * texture, 0.0, 1.0)


def draw_scenes(rng, batch, spec: ToySpec = ToySpec()) -> Scenes:
    """Draw the label-independent part of `batch` clips."""
    S, C, T, K = spec.size, spec.channels, spec.frames, spec.objects
    background = _background(rng, batch, spec)
    direction = rng.uniform(0.0, 2 * np.pi, (batch, K))
    period = rng.uniform(*spec.object_period, (batch, K))
    light = rng.uniform(0.0, 2 * np.pi, (batch, K))
    return Scenes(
        background=background,
        shape=rng.integers(0, len(SHAPES), (batch, K)),
        colour=rng.uniform(*spec.colour, (batch, K, C)),
        radius=rng.uniform(*spec.radius, (batch, K)),
        start=rng.uniform(0.0, S, (batch, K, 2)),
        angle=rng.uniform(0.0, 2 * np.pi, (batch, K)),
        speed=rng.uniform(*spec.speed, (batch, K)),
        spin=rng.uniform(*spec.spin, (batch, K)),
        zoom=rng.uniform(*spec.zoom, (batch, K)),
        wave=np.stack([np.cos(direction), np.sin(direction)], -1) / period[..., None],
        phase=rng.uniform(0.0, 2 * np.pi, (batch, K)),
        tint=rng.uniform(-1.0, 1.0, (batch, K, C)),
        light=np.stack([np.cos(light), np.sin(light)], -1),
        shade_tint=_signed_weights(rng, (batch, K, C)),
        scene_cycles=_nonzero_cycles(rng, (batch, SCENE_WAVES)),
        scene_phase=rng.uniform(0.0, 2 * np.pi, (batch, SCENE_WAVES)),
        scene_tint=rng.uniform(-1.0, 1.0, (batch, SCENE_WAVES, C)),
        noise=rng.standard_normal((batch, T, C, S, S)),
    )


def _signed_weights(rng, shape):
    """Per-channel weights of random sign and magnitude in [0.5, 1]: no channel is left nearly
    flat, which per-channel normalisation (norm_pix_loss) would turn into amplified noise."""
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 1.0, shape)


def _nonzero_cycles(rng, shape):
    c = rng.integers(-SCENE_CYCLES, SCENE_CYCLES + 1, shape + (2,))
    c[..., 1] = np.where((c[..., 0] == 0) & (c[..., 1] == 0), 1, c[..., 1])
    return c


def _motion_table(spec):
    return np.array([MOTIONS[name] for name in spec.labels])                 # (classes, 4)


def render(scenes: Scenes, labels, spec: ToySpec = ToySpec()):
    """Scenes + motion labels (B,) -> clips (B, T, C, S, S) float32, processor-normalised.

    Here: where every shape is in every frame and what the camera sees; the painting itself (per
    pixel: coverage, texture, shading, then noise and normalisation) is the kernel
    ``paint_shapes`` (kernels/paint.py, a Numba kernel with its NumPy twin)."""
    labels = np.asarray(labels)
    S, T, B, K = spec.size, spec.frames, len(labels), spec.objects
    motion = _motion_table(spec)[labels]                                     # (B, 4)
    t = np.arange(T)[None, :, None]                                          # (1, T, 1)
    pix = np.arange(S) + 0.5                                                 # pixel centres
    # what moves: each shape by itself (cx, cy, theta, scale per shape), or the camera (all
    # pixels map to scene points; the shapes then stay put in the scene)
    if spec.moving == "scene":
        px = np.broadcast_to(pix[None, None, None, :], (B, T, S, S))         # x along the last axis
        py = np.broadcast_to(pix[None, None, :, None], (B, T, S, S))
        m = motion[:, None, None, None, :]                                   # (B, 1, 1, 1, 4)
        v, w, g = (a[:, 0, None, None, None] for a in (scenes.speed, scenes.spin, scenes.zoom))
        tt = np.arange(T)[None, :, None, None]
        th, z = m[..., 2] * w * tt, np.exp(m[..., 3] * g * tt)                # (B, T, 1, 1)
        ox, oy = px - S / 2, py - S / 2                                      # about the frame centre
        c, s_ = np.cos(th), np.sin(th)
        sx = (c * ox + s_ * oy) / z + S / 2 - m[..., 0] * v * tt             # scene coordinates
        sy = (-s_ * ox + c * oy) / z + S / 2 - m[..., 1] * v * tt
        arg = (scenes.scene_cycles[:, None, :, 0, None, None] * sx[:, :, None]
               + scenes.scene_cycles[:, None, :, 1, None, None] * sy[:, :, None]) / S
        waves = np.sin(2 * np.pi * arg + scenes.scene_phase[:, None, :, None, None])   # (B, T, G, S, S)
        texture = np.einsum("btgyx,bgc->btcyx", waves, scenes.scene_tint) / np.sqrt(SCENE_WAVES)
        base = scenes.background.mean(axis=(2, 3))                           # (B, C) its base colour
        canvas = np.clip(base[:, None, :, None, None] + spec.contrast * texture, 0.0, 1.0)
        cx, cy = np.broadcast_to(scenes.start[:, None, :, 0], (B, T, K)), \
            np.broadcast_to(scenes.start[:, None, :, 1], (B, T, K))
        theta = np.broadcast_to(scenes.angle[:, None, :], (B, T, K))
        scale = np.ones((B, T, K))
        zoom = z[:, :, 0, 0]                                                 # screen px per scene px
    else:
        sx, sy = pix[None, None, None, :], pix[None, None, :, None]           # (1, 1, 1, S), (1, 1, S, 1)
        sp = scenes.speed[:, None, :]                                        # (B, 1, K)
        cx = scenes.start[:, None, :, 0] + motion[:, None, None, 0] * sp * t  # (B, T, K)
        cy = scenes.start[:, None, :, 1] + motion[:, None, None, 1] * sp * t
        theta = scenes.angle[:, None, :] + motion[:, None, None, 2] * scenes.spin[:, None, :] * t
        scale = np.exp(motion[:, None, None, 3] * scenes.zoom[:, None, :] * t)             # 1 at frame 0
        canvas = scenes.background[:, None]                                  # (B, 1, C, S, S)
        zoom = np.ones((B, T))
    pose = np.stack([cx, cy, np.cos(theta), np.sin(theta), scale], axis=-1)   # (B, T, K, 5)
    look = np.concatenate([scenes.shape[..., None], scenes.radius[..., None], scenes.wave,
                           scenes.phase[..., None], scenes.light], axis=-1)   # (B, K, 7)
    tints = np.stack([scenes.colour, scenes.tint, scenes.shade_tint], axis=2)  # (B, K, 3, C)
    amps = np.array([spec.object_contrast, spec.shade, spec.noise, pixels.PROCESSOR_MEAN,
                     pixels.PROCESSOR_STD], np.float64)
    out = np.empty(scenes.noise.shape, np.float32)
    as_f64 = lambda a: np.ascontiguousarray(a, np.float64)
    kernels.paint_shapes(*map(as_f64, (canvas, sx, sy, zoom, pose, look, tints, scenes.noise)), amps, out)
    return out


def balanced_labels(rng, batch, num_classes=len(LABELS)):
    """A shuffled batch holding every class equally often (up to batch % num_classes)."""
    return rng.permutation(np.arange(batch) % num_classes)


def batch_at(seed: int, step: int, batch_size: int, spec: ToySpec = ToySpec()):
    """The clips of batch `step` of the stream `seed`: (pixel_values (B, T, C, S, S), labels (B,)).

    A pure function of its arguments: nothing is carried over from earlier batches.
    """
    rng = np.random.default_rng([int(seed), int(step)])
    scenes = draw_scenes(rng, batch_size, spec)
    labels = balanced_labels(rng, batch_size, spec.num_classes)
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
