"""What synthetic motion paths do, and the expressions that may be said about them.

Shared vocabulary of the synthetic MeViS benchmark (:mod:`pipeline.core.data.synth_mevis`): an
object's centre per frame (``path``, ``T x 2`` pixels) is read back into motion facts (still,
moves, stops, starts, turns, leaves, enters; moving together and swapping places as relations
within a group), and expressions are chosen and phrased from those facts, so every expression
holds for its targets and no other object whatever the plan meant.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.core.data.synth_draw import COLOURS, SHAPES

DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
DIRECTION_WORDS = {"left": "to the left", "right": "to the right", "up": "up", "down": "down"}
COUNT_WORDS = {1: "the", 2: "the two", 3: "the three"}
# (singular, plural) phrases per motion; "{dir}" is the direction of the first movement
MOTION_PHRASES: dict[str, tuple[tuple[str | None, str], ...]] = {
    "still": (
        ("that never moves", "that never move"),
        ("standing still the whole time", "standing still the whole time"),
        ("that stays in place", "that stay in place"),
    ),
    "moves": (
        ("that keeps going {dir}", "that keep going {dir}"),
        ("moving {dir} the whole time", "moving {dir} the whole time"),
    ),
    "stops": (
        ("that stops", "that stop"),
        ("that stops moving", "that stop moving"),
        ("moving {dir} and then stopping", "moving {dir} and then stopping"),
    ),
    "starts": (
        ("that starts moving", "that start moving"),
        ("that waits and then moves {dir}", "that wait and then move {dir}"),
    ),
    "turns": (
        ("that turns back", "that turn back"),
        ("that goes {dir} and comes back", "that go {dir} and come back"),
    ),
    "leaves": (("that leaves", "that leave"), ("that goes out of view", "that go out of view")),
    "enters": (("that comes in", "that come in"), ("that comes into view", "that come into view")),
    "together": ((None, "moving together"), (None, "that move side by side")),
    "swap": ((None, "that swap places"), (None, "crossing each other")),
}
STILL_EPS = 1e-9  # a step shorter than this (px) is standing still
MOVE_EPS = 0.5  # a step longer than this (px) is moving
MIN_PHASE = 3  # steps a phase (moving, still, one direction) lasts at least


def plural(noun: str) -> str:
    """English plural of a shape name or "object"."""
    return noun + ("es" if noun.endswith(("s", "x")) else "s")


def mevis_vocabulary() -> list[str]:
    """Every word an expression of the synthetic MeViS benchmark can contain, sorted."""
    words = {"object", "objects", *COLOURS, *SHAPES, *(plural(s) for s in SHAPES)}
    for text in COUNT_WORDS.values():
        words.update(text.split())
    for text in DIRECTION_WORDS.values():
        words.update(text.split())
    for options in MOTION_PHRASES.values():
        for pair in options:
            for phrase in pair:
                words.update((phrase or "").replace("{dir}", "").split())
    return sorted(words)


# --------------------------------------------------------------------------------------------
# objects


@dataclass(eq=False)
class MotionObject:
    """One shape: appearance, planned motion, and its centre per frame (``path``: ``T x 2``).

    Compared by identity (``in`` on lists of objects must not compare paths)."""

    colour: str
    shape: str
    radius: float
    texture: str
    spin: tuple[float, float]
    depth: float
    look: int  # objects with equal looks are drawn from one patch (identical look-alikes)
    behaviour: str  # SOLO, "together" or "swap": the plan (what the path does: motion_facts)
    direction: str
    obj_id: int = 0
    path: np.ndarray | None = None

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        assert self.path is not None
        return self.path[:, 0], self.path[:, 1]


@dataclass(frozen=True)
class SynthExpression:
    """An expression with its targets (obj ids, sorted) and what it names.

    ``kind``: "appearance" or "motion"; ``colour``/``shape``: the appearance words (``None``
    where not named); ``motion``: the motion named (a :data:`MOTION_PHRASES` key) or ``None``.
    """

    text: str
    obj_ids: tuple[int, ...]
    kind: str
    colour: str | None
    shape: str | None
    motion: str | None


def wholly_inside(obj: MotionObject, H: int, W: int) -> np.ndarray:
    """Per frame, whether the whole shape lies inside the frame (``T bool``)."""
    x, y = obj.centres()
    r = obj.radius * 1.1
    return (x >= r) & (x <= W - r) & (y >= r) & (y <= H - r)


def wholly_outside(obj: MotionObject, H: int, W: int) -> np.ndarray:
    """Per frame, whether no part of the shape lies inside the frame (``T bool``)."""
    x, y = obj.centres()
    r = obj.radius * 1.1
    return (x <= -r) | (x >= W + r) | (y <= -r) | (y >= H + r)


# --------------------------------------------------------------------------------------------
# what a path does


def _heading(step: np.ndarray) -> str:
    if abs(step[0]) >= abs(step[1]):
        return "right" if step[0] > 0 else "left"
    return "down" if step[1] > 0 else "up"


def motion_facts(obj: MotionObject, H: int, W: int) -> set[tuple[str, str | None]]:
    """What the object's own path does, as ``(motion, direction or None)`` pairs.

    ``still``: no step moves; ``moves``: every step moves, one heading; ``stops`` / ``starts``:
    moving then still / still then moving, each phase >= :data:`MIN_PHASE` steps; ``turns``:
    one heading, then the opposite one; ``leaves`` / ``enters``: wholly in view at the first /
    last frame and wholly out of it at the last / first.
    """
    assert obj.path is not None
    steps = np.diff(obj.path, axis=0)
    length = np.hypot(steps[:, 0], steps[:, 1])
    moving, still = length > MOVE_EPS, length < STILL_EPS
    headings = [_heading(s) for s in steps]
    facts: set[tuple[str, str | None]] = set()
    if still.all():
        facts.add(("still", None))
    for k in range(MIN_PHASE, len(steps) - MIN_PHASE + 1):
        first = set(headings[:k])
        if moving[:k].all() and still[k:].all() and len(first) == 1:
            facts |= {("stops", None), ("stops", headings[0])}
        if still[:k].all() and moving[k:].all() and len(set(headings[k:])) == 1:
            facts |= {("starts", None), ("starts", headings[k])}
        if moving.all() and len(first) == 1 and set(headings[k:]) == {OPPOSITE[headings[0]]}:
            facts |= {("turns", None), ("turns", headings[0])}
    if moving.all() and len(set(headings)) == 1:
        facts.add(("moves", headings[0]))
    inside, outside = wholly_inside(obj, H, W), wholly_outside(obj, H, W)
    if inside[0] and outside[-1]:
        facts.add(("leaves", None))
    if outside[0] and inside[-1]:
        facts.add(("enters", None))
    return facts


def _together(group: Sequence[MotionObject]) -> list[list[MotionObject]]:
    """Sets of >= 2 objects of ``group`` whose moving paths differ by a constant offset."""
    sets: list[list[MotionObject]] = []
    for obj in group:
        assert obj.path is not None
        steps = np.diff(obj.path, axis=0)
        if not (np.hypot(steps[:, 0], steps[:, 1]) > MOVE_EPS).all():
            continue
        for members in sets:
            assert members[0].path is not None
            if np.allclose(np.diff(members[0].path, axis=0), steps, atol=1e-6):
                members.append(obj)
                break
        else:
            sets.append([obj])
    return [s for s in sets if len(s) >= 2]


def _swapping(group: Sequence[MotionObject]) -> list[list[MotionObject]]:
    """Pairs of ``group`` that end where the other started."""
    pairs = []
    for a, b in itertools.combinations(group, 2):
        assert a.path is not None and b.path is not None
        if np.hypot(*(a.path[0] - b.path[-1])) < 1 and np.hypot(*(a.path[-1] - b.path[0])) < 1:
            pairs.append([a, b])
    return pairs


# --------------------------------------------------------------------------------------------
# expressions


def _descriptors(objects: Sequence[MotionObject]) -> list[tuple[str | None, str | None]]:
    """Every (colour, shape) description an object of the scene fits, ``None`` = not named."""
    out = {(None, None)}
    for o in objects:
        out |= {(o.colour, o.shape), (o.colour, None), (None, o.shape)}
    return sorted(out, key=lambda d: (d[0] or "", d[1] or ""))


def _fits_words(obj: MotionObject, colour: str | None, shape: str | None) -> bool:
    return colour in (None, obj.colour) and shape in (None, obj.shape)


def _motion_targets(
    group: list[MotionObject], H: int, W: int
) -> list[tuple[str, str | None, list[MotionObject]]]:
    """(motion, direction, targets) that pick a proper subset of ``group`` of 1-3 objects."""
    facts = {id(o): motion_facts(o, H, W) for o in group}
    found = []
    for fact in sorted(set().union(*facts.values()), key=lambda f: (f[0], f[1] or "")):
        found.append((fact[0], fact[1], [o for o in group if fact in facts[id(o)]]))
    for relation, sets in (("together", _together(group)), ("swap", _swapping(group))):
        if len(sets) == 1:  # two formations (or swaps) would make "the ones ..." ambiguous
            found.append((relation, None, sets[0]))
    return [f for f in found if 1 <= len(f[2]) <= 3 and len(f[2]) < len(group)]


def _text(
    rng: np.random.Generator,
    n: int,
    colour: str | None,
    shape: str | None,
    motion: str | None,
    direction: str | None,
) -> str:
    noun = shape or "object"
    words = [COUNT_WORDS[n], *([colour] if colour else []), noun if n == 1 else plural(noun)]
    if motion is not None:
        options = [
            p for p in MOTION_PHRASES[motion] if ("{dir}" in p[1]) == (direction is not None)
        ]
        phrase = options[int(rng.integers(len(options)))][0 if n == 1 else 1]
        assert phrase is not None
        words.append(phrase.replace("{dir}", DIRECTION_WORDS.get(direction or "", "")))
    return " ".join(words)


def choose_expressions(
    rng: np.random.Generator, objects: list[MotionObject], H: int, W: int
) -> list[SynthExpression]:
    """Up to three motion and two appearance expressions, all checked against the paths.

    Motion ones prefer relations (together, swap), several targets and look-alike groups;
    appearance ones prefer several targets. No two share their targets and kind."""
    motion, appearance = [], []
    for colour, shape in _descriptors(objects):
        group = [o for o in objects if _fits_words(o, colour, shape)]
        if (colour or shape) and 1 <= len(group) <= 3:
            score = len(group) + rng.random()
            appearance.append((score, colour, shape, None, None, group))
        for name, direction, targets in _motion_targets(group, H, W):
            same_look = len({o.look for o in group}) == 1
            relation = name in ("together", "swap")
            score = 2 * relation + (len(targets) > 1) + same_look + 0.8 * rng.random()
            motion.append((score, colour, shape, name, direction, targets))
    chosen: list[SynthExpression] = []
    for options, limit, kind in ((motion, 3, "motion"), (appearance, 2, "appearance")):
        seen: set[tuple[int, ...]] = set()
        for _, colour, shape, name, direction, targets in sorted(options, key=lambda o: -o[0]):
            ids = tuple(sorted(o.obj_id for o in targets))
            if ids in seen or len(seen) == limit:
                continue
            seen.add(ids)
            text = _text(rng, len(ids), colour, shape, name, direction)
            chosen.append(SynthExpression(text, ids, kind, colour, shape, name))
    order = rng.permutation(len(chosen))
    return [chosen[i] for i in order]
