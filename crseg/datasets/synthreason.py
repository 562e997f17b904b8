"""SynthReason: a procedural reasoning-segmentation world (no downloads).

Each image shows 3-6 flat-coloured shapes on a lightly noisy background.
One object is the target (or none, for the ~5% no-answer share); every image
gets ``queries_per_image`` queries, all naming that same target, written in
ReasonSeg's (LISA's) format plus ``glcot`` and ``query_type``.

Queries are built as small structured *specs* and evaluated back on the scene
(:func:`evaluate`); a spec is only used when the set it selects is exactly
``{target}`` (or empty, for no-answer queries), so every query is unique.

Ignore rule (documented choice): the hidden part of an occluded target is
ambiguous (modal vs. amodal masks), so it is marked ``ignore`` (255), dilated
by one pixel to also cover the occlusion boundary. In LISA's format that is the
target's full polygon (label ``target``) plus smaller ``ignore`` polygons, which
the largest-area-first fill paints on top.

Everything is deterministic per (seed, split, index), so parallel workers
give the same output as a serial run.
"""
import itertools

import cv2
import numpy as np

from .transforms.rasterize import rasterize_shapes

SHAPES = ('circle', 'square', 'triangle', 'star', 'hexagon')
COLOURS = {  # BGR, as cv2 writes them
    'red': (40, 40, 215), 'green': (60, 165, 55), 'blue': (205, 95, 35),
    'yellow': (40, 215, 235), 'purple': (160, 50, 140), 'orange': (30, 140, 245)}
SIZE_RANGES = {'small': (0.08, 0.10), 'large': (0.15, 0.18)}  # radius / img
IMPLICIT_SHAPE = {  # '{c}' takes an optional colour word
    'circle': 'the {c}object that could roll', 'square': 'the {c}object with four equal sides',
    'triangle': 'the {c}object with three corners', 'star': 'the {c}object with five points',
    'hexagon': 'the {c}object with six corners'}
SHAPE_REASON = {'circle': 'a circle can roll', 'square': 'a square has four equal sides',
                'triangle': 'a triangle has three corners', 'star': 'a star has five points',
                'hexagon': 'a hexagon has six corners'}
IMPLICIT_COLOUR = {
    'red': 'a ripe tomato', 'green': 'fresh grass', 'blue': 'a clear sky', 'yellow': 'a banana',
    'purple': 'lavender', 'orange': 'a carrot'}
RELATIONS = ('left of', 'right of', 'above', 'below')
SUPERLATIVES = ('largest', 'smallest', 'leftmost', 'rightmost', 'topmost', 'bottommost')
QUERY_TYPES = ('attribute', 'spatial', 'superlative', 'negation', 'implicit')
SENTENCE_TEMPLATES = (
    'Can you find {p} in this picture?', 'Please segment {p} in this scene.',
    'Looking at all the shapes here, where is {p}?',
    'Which shape would you pick if you were asked for {p}?')
MIN_VISIBLE = 0.6  # every object keeps at least this share of its pixels visible

# ---- scene drawing (radii are shares of the image side; see make_scene / _polygon)
SIZES = tuple(SIZE_RANGES)  # ('small', 'large'): the order the generator draws from
NUM_OBJECTS = (3, 7)  # objects per scene: rng.integers(low, high), i.e. 3-6
PLACEMENT_TRIES = 30  # attempts to place one object before the scene keeps fewer
BORDER_PX = 2  # gap between an object's bounding circle and the image border
BACKGROUND_LEVELS = (215, 245)  # per-channel grey level range of the background
BACKGROUND_NOISE_SD = 3.0
SQUARE_HALF_SIDE = 0.85  # a square's half side, as a share of its radius
STAR_INNER_RADIUS = 0.45  # a star's inner vertices, as a share of its radius
VERTICES = {'circle': (40, 0.0), 'triangle': (3, -90.0), 'hexagon': (6, 0.0),
            'star': (10, -90.0)}  # polygon vertices and the first one's angle (degrees)

# ---- uniqueness rules of evaluate() (shares of the image side)
CLEAR_OFFSET = 0.08  # a relation's offset along its axis (and a superlative's lead)
NEAR_OFFSET = 0.5 * CLEAR_OFFSET  # an object this far along the axis counts as a match too
CLEAR_RADIUS_RATIO = 1.3  # 'largest' / 'smallest': radius ratio to the runner-up
# evaluate() returns [REJECT] for a spec that must never be used (ambiguous or pointless):
# REJECT is no object index, so the result never equals the wanted set.
REJECT = -1

# ---- query and GLCoT texts
# candidate_specs() starts with one 'attribute' spec per noun phrase of _noun_phrases():
# shape, colour, colour + shape, size + colour + shape. FULL_NPS are the last two, which name
# an object by colour and shape (references of spatial queries, short answers).
FULL_NPS = slice(2, 4)
ARTICLE = 'the '  # every noun phrase starts with it (np_text)
NO_ANSWER = 'none'  # the GLCoT answer of a no-answer query
PARTLY_HIDDEN = 0.05  # GLCoT says 'partly hidden' above this hidden share of the target
SCENE_TRIES = 20  # scenes drawn for one sample before giving up


def _polygon(shape, cx, cy, r):
    """Integer polygon (N, 2) of a shape centred at (cx, cy) with radius r."""
    if shape == 'square':
        h = SQUARE_HALF_SIDE * r
        pts = [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    else:
        n, start = VERTICES[shape]
        ang = np.deg2rad(start + 360.0 * np.arange(n) / n)
        rad = np.full(n, float(r))
        if shape == 'star':
            rad[1::2] = STAR_INNER_RADIUS * r
        pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)
    return np.round(np.asarray(pts, dtype=np.float64)).astype(np.int32)


# ---- region words: a 3x3 split of the image, rows then columns ('' = the middle third)
REGION_ROWS = ('top', '', 'bottom')
REGION_COLS = ('left', '', 'right')
REGION_CENTRE = 'center'  # the middle cell, which has neither a row nor a column word


def _region(cx, cy, size):
    """Coarse 3x3 position word: 'top left', 'center', 'right', ..."""
    col = REGION_COLS[min(int(3 * cx / size), 2)]
    row = REGION_ROWS[min(int(3 * cy / size), 2)]
    return ' '.join(w for w in (row, col) if w) or REGION_CENTRE


def make_scene(rng, img_size=224, num_objects=None):
    """Draw a scene; return (BGR uint8 image, list of object dicts, label map).

    Objects carry shape, colour, size, r, cx, cy, poly, amodal (bool mask),
    visible (bool mask), hidden (bool mask), region. The label map holds the
    index of the top-most object per pixel (-1 background).
    """
    s = img_size
    n = int(num_objects or rng.integers(*NUM_OBJECTS))
    objs, label = [], np.full((s, s), -1, np.int16)
    for _ in range(n):
        for _try in range(PLACEMENT_TRIES):
            size = SIZES[int(rng.integers(len(SIZES)))]
            r = float(rng.uniform(*SIZE_RANGES[size])) * s
            cx, cy = (float(v) for v in rng.uniform(r + BORDER_PX, s - r - BORDER_PX, size=2))
            shape = SHAPES[int(rng.integers(len(SHAPES)))]
            poly = _polygon(shape, cx, cy, r)
            amodal = np.zeros((s, s), np.uint8)
            cv2.fillPoly(amodal, [poly], 1)
            new_label = label.copy()
            new_label[amodal > 0] = len(objs)
            if all((new_label == i).sum() >= MIN_VISIBLE * o['amodal'].sum()
                   for i, o in enumerate(objs)):
                break
        else:
            continue  # no room: keep fewer objects
        colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
        label = new_label
        objs.append(dict(shape=shape, colour=colour, size=size, r=r, cx=cx, cy=cy, poly=poly,
                         amodal=amodal > 0, region=_region(cx, cy, s)))
    base = rng.integers(*BACKGROUND_LEVELS, size=3)
    img = np.clip(base + rng.normal(0, BACKGROUND_NOISE_SD, size=(s, s, 3)), 0,
                  255).astype(np.uint8)
    for i, o in enumerate(objs):
        o['visible'] = label == i
        o['hidden'] = o['amodal'] & ~o['visible']
        img[o['visible']] = COLOURS[o['colour']]
    return img, objs, label


# ---------------------------------------------------------------- query specs
def np_text(np_):
    """'the large red circle' from a noun-phrase dict (size, colour, shape)."""
    words = [np_.get('size'), np_.get('colour'), np_.get('shape') or 'object']
    return ARTICLE + ' '.join(w for w in words if w)


def np_match(o, np_):
    return all(np_.get(k) in (None, o[k]) for k in ('size', 'colour', 'shape'))


def _along(o, ref, rel):
    dx, dy = o['cx'] - ref['cx'], o['cy'] - ref['cy']
    return {'left of': (-dx, dy), 'right of': (dx, dy), 'above': (-dy, dx),
            'below': (dy, dx)}[rel]


def _sup_value(o, key):
    return {'largest': o['r'], 'smallest': -o['r'], 'leftmost': -o['cx'], 'rightmost': o['cx'],
            'topmost': -o['cy'], 'bottommost': o['cy']}[key]


def evaluate(spec, objs, img_size):
    """Indices of the objects a query spec selects (the uniqueness check).

    Borderline cases count as matches, so a spec is only accepted when the
    target is the one clear answer: a relation needs the target's offset along
    the axis > CLEAR_OFFSET (8%) of the image and dominant, and any other object
    with > NEAR_OFFSET (4%) counts as a second match; a superlative needs a clear
    winner (radius x CLEAR_RADIUS_RATIO, or CLEAR_OFFSET of the image ahead of
    the runner-up). A spec that must not be used gives ``[REJECT]``.
    """
    margin = CLEAR_OFFSET * img_size
    kind, head = spec['type'], spec.get('np', {})
    cand = [i for i, o in enumerate(objs) if np_match(o, head)]
    if kind == 'attribute':
        return cand
    if kind == 'implicit':
        return [i for i in cand if spec.get('shape') in (None, objs[i]['shape'])
                and spec.get('colour_of') in (None, objs[i]['colour'])]
    if kind == 'negation':
        key, val = spec['not']
        if not any(objs[i][key] == val for i in cand):
            return [REJECT]  # the negation would be pointless
        return [i for i in cand if objs[i][key] != val]
    if kind == 'spatial':
        refs = [i for i, o in enumerate(objs) if np_match(o, spec['ref'])]
        if len(refs) != 1:
            return [REJECT]
        ref = objs[refs[0]]
        out = []
        for i in cand:
            if i == refs[0]:
                continue
            along, across = _along(objs[i], ref, spec['rel'])
            if along > NEAR_OFFSET * img_size:
                out.append(i if along > margin and along >= abs(across) else REJECT)
        return out
    if kind == 'superlative':
        if len(cand) < 2:
            return [REJECT]
        vals = sorted(((_sup_value(objs[i], spec['key']), i) for i in cand), reverse=True)
        (v0, i0), (v1, _) = vals[0], vals[1]
        if spec['key'] == 'largest':
            ok = v0 > CLEAR_RADIUS_RATIO * v1
        elif spec['key'] == 'smallest':  # values are -r: runner-up radius ratio x the winner's
            ok = -v1 > CLEAR_RADIUS_RATIO * -v0
        else:
            ok = v0 - v1 > margin
        return [i0] if ok else [REJECT]
    raise ValueError(f'unknown query spec type {kind!r}')


def spec_text(spec):
    """Short phrase of a query spec."""
    kind, head = spec['type'], spec.get('np', {})
    if kind == 'attribute':
        return np_text(head)
    if kind == 'implicit':
        if spec.get('colour_of'):
            noun = head.get('shape') or 'object'
            return f"the {noun} with the colour of {IMPLICIT_COLOUR[spec['colour_of']]}"
        c = f"{head['colour']} " if head.get('colour') else ''
        return IMPLICIT_SHAPE[spec['shape']].format(c=c)
    if kind == 'negation':
        key, val = spec['not']
        return f'{np_text(head)} that is not {val}' if key == 'colour' else \
            f'{np_text(head)} that is not a {val}'
    if kind == 'spatial':
        return f"{np_text(head)} {spec['rel']} {np_text(spec['ref'])}"
    return np_text(head).replace(ARTICLE, f"{ARTICLE}{spec['key']} ", 1)


def _noun_phrases(o):
    """The noun phrases naming object ``o``, shortest first (see FULL_NPS)."""
    return [{'shape': o['shape']}, {'colour': o['colour']},
            {'colour': o['colour'], 'shape': o['shape']},
            {'size': o['size'], 'colour': o['colour'], 'shape': o['shape']}]


def candidate_specs(objs, t):
    """All query specs of every type that could name object ``t`` (the first ones: one
    'attribute' spec per noun phrase of :func:`_noun_phrases`)."""
    o = objs[t]
    nps = _noun_phrases(o)
    heads = [{}, {'shape': o['shape']}, {'colour': o['colour']}]
    out = [dict(type='attribute', np=n) for n in nps]
    out += [dict(type='implicit', np={}, shape=o['shape']),
            dict(type='implicit', np={'colour': o['colour']}, shape=o['shape']),
            dict(type='implicit', np={}, colour_of=o['colour']),
            dict(type='implicit', np={'shape': o['shape']}, colour_of=o['colour'])]
    out += [dict(type='superlative', np=h, key=k) for h in heads for k in SUPERLATIVES]
    for other in objs:
        if other['colour'] != o['colour']:
            out.append(
                dict(type='negation',
                     np={'shape': o['shape']},
                     **{'not': ('colour', other['colour'])}))
        if other['shape'] != o['shape']:
            out.append(
                dict(type='negation',
                     np={'colour': o['colour']},
                     **{'not': ('shape', other['shape'])}))
    for j, ref in enumerate(objs):
        if j != t:
            for rel, h, rn in itertools.product(RELATIONS, heads, nps[FULL_NPS]):
                out.append(dict(type='spatial', np=h, rel=rel, ref={k: ref[k] for k in rn}))
    return out


def _answer(objs, t, spec, img_size):
    """Short phrase naming object t: colour + shape (+ size) when that is
    unique, else the (unique by construction) query phrase itself."""
    for np_ in _noun_phrases(objs[t])[FULL_NPS]:
        n = dict(type='attribute', np=np_)
        if evaluate(n, objs, img_size) == [t]:
            return spec_text(n)
    return spec_text(spec)


def _without_article(phrase):
    if not phrase.startswith(ARTICLE):
        raise ValueError(f'SynthReason: phrase {phrase!r} does not start with {ARTICLE!r}')
    return phrase[len(ARTICLE):]


def _glcot(objs, t, spec, img_size):
    parts = [f"{o['colour']} {o['shape']} {o['region']}" for o in objs]
    glob = f'{len(objs)} objects: ' + '; '.join(parts) + '.'
    if t is None:
        return dict(glob=glob,
                    local=f'There is no {_without_article(spec_text(spec))} in the image.',
                    answer=NO_ANSWER)
    o = objs[t]
    hidden = ', partly hidden' if o['hidden'].sum() > PARTLY_HIDDEN * o['amodal'].sum() else ''
    local = f"In the {o['region']} region: a {o['size']} {o['colour']} {o['shape']}{hidden}."
    kind = spec['type']
    if kind == 'spatial':
        local += f" It is {spec['rel']} {np_text(spec['ref'])}."
    elif kind == 'superlative':
        local += f" It is the {spec['key']} {spec.get('np', {}).get('shape') or 'one'}."
    elif kind == 'negation':
        local += f" It is {o[spec['not'][0]]}, not {spec['not'][1]}."
    elif kind == 'implicit':
        local += f" It is {o['colour']}." if spec.get(
            'colour_of') else f" {SHAPE_REASON[o['shape']].capitalize()}."
    return dict(glob=glob, local=local, answer=_answer(objs, t, spec, img_size))


def _empty_specs(objs):
    present = {(o['colour'], o['shape']) for o in objs}
    shapes = {o['shape'] for o in objs}
    out = [dict(type='attribute', np={'colour': c, 'shape': s}) for c in COLOURS for s in SHAPES
           if (c, s) not in present]
    out += [dict(type='implicit', np={}, shape=s) for s in SHAPES if s not in shapes]
    return out


def _shapes_json(o):
    shapes = [dict(label='target', points=o['poly'].tolist())]
    if o['hidden'].any():
        band = cv2.dilate(o['hidden'].astype(np.uint8), np.ones((3, 3), np.uint8))
        contours, _ = cv2.findContours(band, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        shapes += [dict(label='ignore', points=c.reshape(-1, 2).tolist())
                   for c in contours if len(c) >= 3]
    return shapes


def _mask_ok(shapes, objs, t, img_size):
    """Self-check: the annotation rasterizes to visible target pixels only."""
    if t is None:
        return not shapes
    seg, _ = rasterize_shapes(shapes, img_size, img_size, 'synthreason')
    tgt = seg == 1
    return bool(tgt.any()) and not (tgt & ~objs[t]['visible']).any()


def split_id(split):
    """A stable integer of a split name (a polynomial string hash; Python's ``hash`` of a
    str changes between processes), part of each sample's random seed."""
    return sum(ord(ch) * 31 ** k for k, ch in enumerate(split)) % (2 ** 31)


def generate_sample(seed, split, index, img_size=224, queries_per_image=2,
                    sentence_ratio=0.5, empty_ratio=0.05):
    """One SynthReason image: (BGR image, LISA-format annotation dict, stats).

    Deterministic in (seed, split, index). ``stats`` holds the query types,
    ``is_sentence``, ``empty`` and the target's visible-area fraction.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), split_id(split), int(index)]))
    for _ in range(SCENE_TRIES):
        img, objs, _label = make_scene(rng, img_size)
        empty = bool(rng.random() < empty_ratio)
        t = None if empty else int(rng.integers(len(objs)))
        specs = _empty_specs(objs) if empty else candidate_specs(objs, t)
        want = [] if empty else [t]
        valid = [s for s in specs if evaluate(s, objs, img_size) == want]
        by_type = {k: [s for s in valid if s['type'] == k] for k in QUERY_TYPES}
        types = [k for k in QUERY_TYPES if by_type[k]]
        shapes = [] if empty else _shapes_json(objs[t])
        if types and _mask_ok(shapes, objs, t, img_size):
            break
    else:
        raise RuntimeError(f'SynthReason: no valid query for seed={seed} {split}#{index}')
    is_sentence = bool(rng.random() < sentence_ratio)
    order = [types[i] for i in rng.permutation(len(types))]
    chosen = [order[k % len(order)] for k in range(queries_per_image)]
    texts, glcots = [], []
    for k in chosen:
        spec = by_type[k][int(rng.integers(len(by_type[k])))]
        phrase = spec_text(spec)
        if is_sentence:
            phrase = SENTENCE_TEMPLATES[int(rng.integers(len(SENTENCE_TEMPLATES)))].format(p=phrase)
        texts.append(phrase)
        g = _glcot(objs, t, spec, img_size)
        glcots.append({'global': g['glob'], 'local': g['local'], 'answer': g['answer']})
    ann = dict(text=texts, is_sentence=is_sentence, shapes=shapes,
               glcot=glcots, query_type=chosen)
    area = 0.0 if empty else float(objs[t]['visible'].mean())
    stats = dict(query_type=chosen, is_sentence=is_sentence, empty=empty, target_area=area)
    return img, ann, stats
