"""From a clean ink mask to digit candidates: lines in reading order, pieces, candidate digits, crops.

Connected components are the first guess at digits. Components wide enough to hold two digits are cut
along the cheapest top-to-bottom paths through them (a shortest-path "drop fall" that bends around
strokes; it ends at minima of the vertical projection, the directional projection method). Components
too short to be digits are specks, marks (commas, dashes, underlines) or detached strokes of a
neighbour (the bar of a 5). Which pieces form which digit is not decided here: ``candidates`` lists
every plausible grouping of neighbouring pieces, the classifier scores them all in one batch, and
``best_path`` picks the reading with the highest total score (recognition-driven segmentation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from digitlab.data.preprocess import digit_input, ink_contrast, percentile
from digitlab.read.config import ReadConfig
from digitlab.read.image import Page, components


@dataclass(frozen=True, eq=False)
class Piece:
    """A component, or its part between two cut paths."""

    label: int  # the component's label in Layout.labels
    part: int  # 0, 1, ... from left to right within the component
    box: tuple[int, int, int, int]  # (x, y, w, h) of the piece's own ink, work coordinates
    fragment: bool  # too small to be a digit on its own
    cut_cost: float = 0.0  # cost of the cut on its left (0 for part 0)
    pixels: np.ndarray | None = None  # bool over the component's box: the piece's pixels (None: all)
    small: bool = False  # a whole component smaller than a digit: read only if it looks like one (a blot)
    sliver: bool = False  # narrower than a stroke, between two cuts of one joint: never a digit alone

    @property
    def skippable(self) -> bool:
        return self.fragment or self.small or self.sliver


@dataclass(frozen=True)
class Mark:
    """Ink that is not read as a digit."""

    box: tuple[int, int, int, int]  # work coordinates
    reason: str


@dataclass
class Line:
    pieces: list[Piece]  # ordered left to right by their centres
    top: float
    bottom: float
    cuts: list[float] = field(default_factory=list)  # cost of a digit boundary before piece b (len + 1)


@dataclass
class Layout:
    labels: np.ndarray  # (H, W) int32 component labels of page.mask
    stats: np.ndarray  # (n, 5) x, y, w, h, area per label
    lines: list[Line]  # top to bottom
    marks: list[Mark]

    def pieces_of(self, cand: Candidate) -> list[Piece]:
        """The pieces a candidate reads as one digit."""
        return self.lines[cand.line].pieces[cand.first:cand.last + 1]


@dataclass(frozen=True)
class Candidate:
    """Pieces line.pieces[first:last + 1] read as one digit."""

    line: int
    first: int
    last: int
    box: tuple[int, int, int, int]  # work coordinates
    prior: float  # log-score from geometry alone, added to the classifier's log-probability
    whole: bool  # exactly one component, all of it: most of these are single digits


def layout(page: Page, cfg: ReadConfig) -> Layout:
    """Components -> specks and marks set aside, lines found, wide components cut into pieces."""
    h, sw = page.text_height, page.stroke_width
    n, labels, stats = components(page.mask)
    marks, mains, fragments = [], [], []
    for i in range(1, n):
        x, y, w, hh, _ = (int(v) for v in stats[i])
        if max(w, hh) < cfg.speck_size * h:
            marks.append(Mark((x, y, w, hh), "speck"))
        elif hh < cfg.border_height * h and _at_border(page, (x, y, w, hh)):
            marks.append(Mark((x, y, w, hh), "at the image border, shorter than the digits (an edge, a shadow)"))
        elif is_fragment(w, hh, cfg, h, sw):
            fragments.append(i)
        else:
            mains.append(i)

    # Lines: each main component joins the line it overlaps most vertically, in order of its centre.
    # Components much shorter than the text (a part of a digit drawn in two strokes, one above the other)
    # join the line they are in or next to afterwards, so that they do not open lines of their own
    def centre(i: int) -> float:
        return stats[i, 1] + stats[i, 3] / 2

    typical = float(np.median(stats[mains, 3])) if mains else 0.0
    short = {i for i in mains if stats[i, 3] < cfg.line_seed_height * typical}
    bands: list[list[int]] = []
    for i in sorted((i for i in mains if i not in short), key=centre):
        top, bottom = stats[i, 1], stats[i, 1] + stats[i, 3]
        best, best_overlap = None, 0.0
        for k, members in enumerate(bands):
            bt, bb = _band(stats, members)
            overlap = (min(bottom, bb) - max(top, bt)) / max(1.0, min(bottom - top, bb - bt))
            if overlap >= cfg.line_overlap and overlap > best_overlap:
                best, best_overlap = k, overlap
        if best is None:
            bands.append([i])
        else:
            bands[best].append(i)
    bands.sort(key=lambda m: sum(_band(stats, m)))
    spans = [_band(stats, m) for m in bands]
    for i in sorted(short, key=centre):
        k = _nearest_band(spans, centre(i), cfg.fragment_reach * h)
        if k is not None:
            bands[k].append(i)
        else:  # a line of small digits
            bands.append([i])
            spans.append(_band(stats, [i]))
    bands.sort(key=lambda m: sum(_band(stats, m)))
    bands = _merge_stacked(bands, stats, cfg.stack_gap)
    spans = [_band(stats, m) for m in bands]

    # A symbol sticking out of its line both above and below by a bar (the bar of a $) is no digit: digits
    # share the line's top and baseline. A digit drawn larger than its neighbours sticks out too, but
    # wide (the loops of an 8), as does one with a ruling line's residue on its foot (wide above)
    for k, members in enumerate(bands):
        if len(members) < 3:
            continue
        bt, bb = spans[k]
        for i in [i for i in members if stats[i, 1] < bt - cfg.protrude * h
                  and stats[i, 1] + stats[i, 3] > bb + cfg.protrude * h
                  and _bars(labels, stats, i, bt, bb, cfg.bar_width * sw)]:
            members.remove(i)
            marks.append(Mark(tuple(int(v) for v in stats[i, :4]), "symbol taller than the digits ($, brackets)"))

    # A line beside other lines whose components are all much shorter than the digits holds stray marks
    # (a blot, a box's corner, specks in a row), not digits
    if len(bands) > 1:
        for members in bands:
            if max(stats[i, 3] for i in members) < cfg.lone_height * typical:
                marks += [Mark(tuple(int(v) for v in stats[i, :4]),
                               "on a line of its own, much shorter than the digits") for i in members]
                members.clear()
        bands = [m for m in bands if m]
        spans = [_band(stats, m) for m in bands]

    # Fragments belong to the line whose band they are in or next to, else they are marks
    members_of = [list(m) for m in bands]
    for i in fragments:
        x, y, w, hh = (int(v) for v in stats[i, :4])
        k = _nearest_band(spans, centre(i), cfg.fragment_reach * h)
        if k is not None:
            members_of[k].append(i)
        else:
            marks.append(Mark((x, y, w, hh), mark_kind(w, hh, h)))

    lines = []
    for members, (bt, bb) in zip(members_of, spans):
        pieces = [p for i in members for p in _pieces(labels, stats, i, cfg, h, sw)]
        pieces.sort(key=lambda p: p.box[0] + p.box[2] / 2)
        lines.append(Line(pieces=pieces, top=bt, bottom=bb, cuts=_boundary_costs(pieces)))
    return Layout(labels=labels, stats=stats, lines=lines, marks=marks)


def _at_border(page: Page, box: tuple[int, int, int, int]) -> bool:
    """Whether a box (work coordinates) reaches the edge of the original image."""
    x, y, w, hh = page.to_original(box)
    return x <= 1 or y <= 1 or x + w >= page.size[0] - 1 or y + hh >= page.size[1] - 1


def is_fragment(w: float, hh: float, cfg: ReadConfig, h: float, sw: float) -> bool:
    """Short and either one stroke thick (a dash, the bar of a 5) or narrow (a comma): not a digit alone.
    A flat 2 or a small 0 is short but neither."""
    return hh < cfg.fragment_height * h and (hh <= cfg.fragment_strokes * sw or w < cfg.split_min_width * h)


def mark_kind(w: int, hh: int, h: float) -> str:
    if w >= 1.5 * h:
        return "underline"
    if w >= 2 * hh:
        return "dash"
    return "mark (comma, dot or stray stroke)"


def _merge_stacked(bands: list[list[int]], stats: np.ndarray, gap: float) -> list[list[int]]:
    """Join a line to the one below when they are the two halves of digits drawn in pieces one above
    the other: every component of each sits over or under one of the other's (most of its width), and
    the gap between them is under `gap` of their height together (lines of text leave more)."""
    out = [list(bands[0])] if bands else []
    for members in bands[1:]:
        above = out[-1]
        top = min(stats[above, 1])
        bottom = max(stats[members, 1] + stats[members, 3])
        space = min(stats[members, 1]) - max(stats[above, 1] + stats[above, 3])
        if space < gap * (bottom - top) and _over(stats, above, members) and _over(stats, members, above):
            above.extend(members)
        else:
            out.append(list(members))
    return out


def _over(stats: np.ndarray, these: list[int], others: list[int]) -> bool:
    """Whether each of `these` components shares most (60%) of its width with one of `others`."""
    for i in these:
        x, w = stats[i, 0], stats[i, 2]
        if not any(min(x + w, stats[j, 0] + stats[j, 2]) - max(x, stats[j, 0]) >= 0.6 * w for j in others):
            return False
    return True


def _nearest_band(spans: list[tuple[float, float]], cy: float, reach: float) -> int | None:
    """The line whose band (top, bottom) holds the centre row cy, or comes within `reach` of it, with
    its middle nearest; None when none does."""
    near = [(abs(cy - (bt + bb) / 2), k) for k, (bt, bb) in enumerate(spans) if bt - reach <= cy <= bb + reach]
    return min(near)[1] if near else None


def _bars(labels: np.ndarray, stats: np.ndarray, i: int, top: float, bottom: float, width: float) -> bool:
    """Whether component i's ink above row `top` and below row `bottom` is at most `width` pixels wide at
    both ends (a bar through a symbol, not the loops of a digit)."""
    x, y, w, hh = (int(v) for v in stats[i, :4])
    mine = labels[y:y + hh, x:x + w] == i
    for part in (mine[:max(0, int(top) - y)], mine[max(0, int(np.ceil(bottom)) - y):]):
        cols = np.flatnonzero(part.any(0))
        if cols.size and cols[-1] - cols[0] + 1 > width:
            return False
    return True


def _band(stats: np.ndarray, members: list[int]) -> tuple[float, float]:
    tops = stats[members, 1]
    return percentile(tops, 50), percentile(tops + stats[members, 3], 50)


def _pieces(labels: np.ndarray, stats: np.ndarray, i: int, cfg: ReadConfig, h: float,
            sw: float) -> list[Piece]:
    """Component i as one piece, or also cut along paths where touching digits may meet."""
    x, y, w, hh, area = (int(v) for v in stats[i])
    fragment = is_fragment(w, hh, cfg, h, sw)
    whole = Piece(i, 0, (x, y, w, hh), fragment, small=max(w, hh) < cfg.mark_size * h)
    if w < cfg.split_min_width * h or fragment or area > cfg.max_fill * w * hh:  # (a blot is no digits)
        return [whole]
    own = labels[y:y + hh, x:x + w] == i
    paths = cut_paths(own, cfg, h, sw, forced=w > cfg.force_width * h)
    if not paths:
        return [whole]
    # Strip k lies right of k paths. The ink a path crosses is the joint between two digits: a stroke
    # that the paths' removal leaves in one piece, lying mostly (80%) in one strip, goes whole to that
    # strip (the tail of a 2 reaching under the next digit is not cut off by the path's line)
    cols = np.arange(w)[None, :]
    strip = sum((cols >= p[:, None]).astype(np.int32) for p, _ in paths)
    on_path = np.zeros_like(own)
    for p, _ in paths:
        on_path[np.arange(hh), p] = True
    n, parts = cv2.connectedComponents((own & ~on_path).astype(np.uint8), connectivity=8)
    if n > 2:
        votes = np.zeros((n, len(paths) + 1), np.int64)
        np.add.at(votes, (parts[parts > 0], strip[parts > 0]), 1)
        major = votes.argmax(1)
        clear = votes.max(1) >= 0.8 * np.maximum(votes.sum(1), 1)
        strip = np.where((parts > 0) & clear[parts], major[parts], strip)
    pieces: list[Piece] = []
    cost = 0.0
    for k in range(len(paths) + 1):
        cost = max(cost, paths[k - 1][1] if k else 0.0)
        part = own & (strip == k)
        rows, pc = np.flatnonzero(part.any(1)), np.flatnonzero(part.any(0))
        if rows.size == 0:  # two paths met: one cut
            continue
        box = (x + int(pc[0]), y + int(rows[0]), int(pc[-1] - pc[0] + 1), int(rows[-1] - rows[0] + 1))
        pieces.append(Piece(i, len(pieces), box, is_fragment(box[2], box[3], cfg, h, sw), cost if pieces else 0.0,
                            pixels=part, sliver=box[2] < cfg.sliver_width * sw))
        cost = 0.0
    return pieces if len(pieces) > 1 else [whole]


def cut_paths(own: np.ndarray, cfg: ReadConfig, h: float, sw: float,
              forced: bool) -> list[tuple[np.ndarray, float]]:
    """Where touching digits may be separated: near-vertical paths crossing as little ink as possible.

    Each starts from a minimum of the vertical projection (the directional projection method) and may
    bend up to cut_band text heights either side of it, one column per row at most, around strokes
    (a shortest-path "drop fall": each ink pixel crossed costs 1, each sideways step cut_turn); the
    default band is narrow, as nearly straight cuts part crossing strokes best. A path must cross at
    most cut_max_runs runs of ink, cut_max_strokes stroke widths in all (two touching digits meet at one
    thin point, or, a slanted 1 leaning on a 0, at two; the halves of a 0 this lets through are for the
    classifier and the verifier to turn down), unless the component is wider than force_width text
    heights (forced), where paths from a regular grid of starts are tried too and may cross anything.
    Returns (column per row, relative to the
    component; cost) left to right; the cost is split_penalty per stroke width crossed, plus
    split_penalty per extra run of ink."""
    hh, w = own.shape
    margin = max(1, int(round(cfg.min_piece * h)))
    if w < 2 * margin + 1:
        return []
    profile = np.convolve(own.sum(0).astype(np.float64), np.ones(3) / 3, mode="same")
    radius = max(1, margin // 2)
    window = np.lib.stride_tricks.sliding_window_view(np.pad(profile, radius, mode="edge"), 2 * radius + 1)
    starts = [int(c) for c in np.flatnonzero(profile <= window.min(1) + 1e-9) if margin <= c < w - margin]
    starts.sort(key=lambda c: profile[c])
    starts = starts[: 2 * cfg.max_cuts + 2]
    if forced:  # overlapping digits leave no clear minimum: also try a regular grid of starts
        starts += [int(c) for c in np.arange(margin, w - margin, max(1, cfg.min_piece * h))]
    band = max(1, int(round(cfg.cut_band * h)))
    found: list[tuple[np.ndarray, float]] = []
    for path in _cheapest_paths(own, np.array(starts, np.int64), band, cfg.cut_turn):
        on = own[np.arange(hh), path]
        crossed = float(on.sum())
        runs = int(np.count_nonzero(np.diff(on.astype(np.int8)) == 1) + on[0])
        thin = runs <= cfg.cut_max_runs and crossed <= cfg.cut_max_strokes * sw
        if not thin and not forced:
            continue
        left = own & (np.arange(w)[None, :] < path[:, None])
        right = own & ~left
        lw, rw = np.flatnonzero(left.any(0)), np.flatnonzero(right.any(0))
        if lw.size == 0 or rw.size == 0 or lw[-1] - lw[0] + 1 < margin or rw[-1] - rw[0] + 1 < margin:
            continue
        # Touching digits are each about as tall as the pair; the bowl cut off a 6 or a 9 is not
        if min(np.count_nonzero(left.any(1)), np.count_nonzero(right.any(1))) < cfg.piece_height * hh:
            continue
        if any(np.abs(path - p).mean() < cfg.cut_apart * h for p, _ in found):
            continue
        found.append((path, cfg.split_penalty * (max(1.0, crossed / sw) + max(0, runs - 1))))
        if len(found) >= cfg.max_cuts:
            break
    found.sort(key=lambda pc: pc[0].mean())
    for k in range(1, len(found)):  # paths must not cross: a later one stays right of the earlier
        found[k] = (np.maximum(found[k][0], found[k - 1][0]), found[k][1])
    return found


def _cheapest_paths(own: np.ndarray, starts: np.ndarray, band: int, turn: float) -> list[np.ndarray]:
    """For each start column, the column per row of the cheapest top-to-bottom path that stays within
    `band` columns of it (ink pixels cost 1, sideways steps `turn`), all starts in one pass over rows."""
    hh, w = own.shape
    if starts.size == 0:
        return []
    cols = starts[:, None] + np.arange(-band, band + 1)[None, :]  # (S, B): the columns of each band
    outside = (cols < 0) | (cols >= w)
    big = np.float32(1e6)
    cost = np.where(outside[None], big, own[:, np.clip(cols, 0, w - 1)].astype(np.float32))  # (H, S, B)
    # Row r's cheapest ways in: from straight above, from the left or from the right (in that order of
    # preference on ties); `came` keeps which, as 0, 1, 2
    came = np.zeros(cost.shape, np.int8)
    ways = np.full((3, *cost.shape[1:]), big, np.float32)
    acc = cost[0].copy()
    for r in range(1, hh):
        ways[0] = acc
        np.add(acc[:, :-1], turn, out=ways[1, :, 1:])
        np.add(acc[:, 1:], turn, out=ways[2, :, :-1])
        came[r] = ways.argmin(0)
        acc = cost[r] + np.minimum(np.minimum(ways[0], ways[1]), ways[2])
    shift = (0, -1, 1)
    steps = came.tolist()  # (plain lists: the walk back is a few scalar steps per row)
    paths = []
    for k, j in enumerate(acc.argmin(1).tolist()):
        pos = [j] * hh
        for r in range(hh - 1, 0, -1):
            j += shift[steps[r][k][j]]
            pos[r - 1] = j
        paths.append(cols[k, pos])
    return paths


def _boundary_costs(pieces: list[Piece]) -> list[float]:
    """Cost of a digit boundary before piece b: the cost of every cut path that boundary uses."""
    costs = [0.0] * (len(pieces) + 1)
    for b in range(1, len(pieces)):
        before = {(p.label, p.part) for p in pieces[:b]}
        costs[b] = sum(p.cut_cost for p in pieces[b:] if p.part and (p.label, p.part - 1) in before)
    return costs


def candidates(lay: Layout, cfg: ReadConfig, h: float) -> list[Candidate]:
    """Every run of neighbouring pieces that could be one digit, with its geometric prior: the digit
    bonus, minus a penalty for a width beyond one digit's, plus for each further component joined in
    a score that rewards horizontal overlap (the loop of a broken 6 lies under its stem, the bar of a
    5 over its body) and penalises a gap between them (two digits), the more the wider it is."""
    out = []
    for k, line in enumerate(lay.lines):
        ps = line.pieces
        parts: dict[int, int] = {}
        for p in ps:
            parts[p.label] = parts.get(p.label, 0) + 1
        last = {p.label: j for j, p in enumerate(ps)}
        for i in range(len(ps)):
            x0, y0, w0, h0 = ps[i].box
            x1, y1 = x0 + w0, y0 + h0
            joins, seen = 0.0, {ps[i].label}
            # A component cut into more than max_pieces pieces can still be read whole
            whole_end = last[ps[i].label] if ps[i].part == 0 else i
            for j in range(i, min(len(ps), max(i + cfg.max_pieces, whole_end + 1))):
                if j > i:
                    bx, by, bw, bh = ps[j].box
                    if bx - x1 > cfg.merge_gap * h:  # a gap too wide to be inside one digit
                        break
                    if ps[j].label not in seen:
                        seen.add(ps[j].label)
                        overlap = max(0, min(x1, bx + bw) - max(x0, bx)) / max(1, min(bw, x1 - x0))
                        gap = max(0, bx - x1) / (cfg.merge_gap * h)  # 0 (touching) to 1 (as far as allowed)
                        joins += cfg.merge_overlap * overlap - cfg.merge_penalty * gap
                    x0, x1, y0, y1 = min(x0, bx), max(x1, bx + bw), min(y0, by), max(y1, by + bh)
                width = (x1 - x0) / h
                if width > cfg.max_digit_width + 0.6 and j > i:  # a lone piece stays, to be rejected
                    break
                whole = len(seen) == 1 and parts[ps[i].label] == j - i + 1
                if all(p.fragment for p in ps[i:j + 1]) or (j == i and ps[i].sliver) \
                        or (j >= i + cfg.max_pieces and not whole):
                    continue
                prior = cfg.digit_bonus - cfg.wide_penalty * max(0.0, width - cfg.max_digit_width) + joins
                out.append(Candidate(k, i, j, (x0, y0, x1 - x0, y1 - y0), prior, whole))
    return out


def own_pixels(lay: Layout, pieces: list[Piece], box: tuple[int, int, int, int],
               shape: tuple[int, int]) -> tuple[slice, slice, np.ndarray]:
    """The ink of `pieces` around `box` (one pixel of margin, clipped to the page's `shape`):
    (rows, cols, bool mask over lay.labels[rows, cols])."""
    x, y, w, hh = box
    y0, y1 = max(0, y - 1), min(shape[0], y + hh + 1)
    x0, x1 = max(0, x - 1), min(shape[1], x + w + 1)
    sub = lay.labels[y0:y1, x0:x1]
    mine = np.zeros(sub.shape, bool)
    for p in pieces:
        if p.pixels is None:
            mine |= sub == p.label
            continue
        cx, cy, cw, ch = (int(v) for v in lay.stats[p.label, :4])  # p.pixels covers the component's box
        r0, r1, c0, c1 = max(y0, cy), min(y1, cy + ch), max(x0, cx), min(x1, cx + cw)
        if r1 <= r0 or c1 <= c0:  # the piece lies outside the box
            continue
        mine[r0 - y0:r1 - y0, c0 - x0:c1 - x0] |= p.pixels[r0 - cy:r1 - cy, c0 - cx:c1 - cx]
    return slice(y0, y1), slice(x0, x1), mine


def crop(page: Page, lay: Layout, pieces: list[Piece], box: tuple[int, int, int, int],
         half: int | None = None) -> np.ndarray:
    """The digit made of `pieces`, MNIST style: its own ink only (neighbours masked out), white on
    black, the stroke core at 255 with the anti-aliased edge kept (own_ink), then digitlab's digit_input,
    told that the ink is already white on black and flat.
    half=0 or 1: only the ink left or right of the emptiest column of the middle third (one digit of
    two merged ones, read on its own)."""
    rows, cols, mine = own_pixels(lay, pieces, box, page.mask.shape)
    if not mine.any():  # (a box from the line reader's frames can fall between the ink)
        return np.zeros((28, 28), np.uint8)
    others = (lay.labels[rows, cols] > 0) & ~mine
    if half is not None:
        ink_cols = np.flatnonzero(mine.any(0))
        lo, hi = ink_cols[0], ink_cols[-1] + 1
        middle = np.arange(lo + (hi - lo) // 3, max(lo + (hi - lo) // 3 + 1, lo + 2 * (hi - lo) // 3))
        split = int(middle[mine[:, middle].sum(0).argmin()])
        side = (np.arange(mine.shape[1]) < split) if half == 0 else (np.arange(mine.shape[1]) >= split)
        others |= mine & ~side[None, :]
        mine = mine & side[None, :]
        if not mine.any():
            return np.zeros((28, 28), np.uint8)
    gray = (own_ink(page, rows, cols, mine, others) * 255).round().astype(np.uint8)
    return digit_input(gray, dark_ink=False, flat=True)


def own_ink(page: Page, rows: slice, cols: slice, mine: np.ndarray, others: np.ndarray) -> np.ndarray:
    """The ink of `mine` (bool over page[rows, cols]) as float gray in [0, 1], white on black: the stroke
    core at 1 (digitlab's contrast rule, ink_contrast, on the flattened page: background 0, the core
    taken from `mine`), with one pixel of anti-aliased edge around the strokes, but never `others`' ink."""
    edge = cv2.dilate(mine.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~others
    gray = np.where(edge, ink_contrast(page.ink[rows, cols], 0.0, mine), 0.0)
    return np.where(mine, np.maximum(gray, 0.5), gray)  # a binarized pixel is ink even if faint


def pair_prior(cand: Candidate, cfg: ReadConfig, h: float) -> float:
    """The geometric prior of a candidate read as two merged digits: a second digit bonus, and the width
    penalty of two digits' width instead of one's."""
    width = cand.box[2] / h
    return cand.prior + cfg.digit_bonus + cfg.wide_penalty * (
        max(0.0, width - cfg.max_digit_width) - max(0.0, width - 2 * cfg.max_digit_width))


def best_path(line: Line, cands: list[Candidate], logp: np.ndarray, cfg: ReadConfig,
              pair_score: np.ndarray | None = None) -> tuple[list[tuple[int, bool]], list[int]]:
    """The reading of the line with the highest total score: the sum over its digits of log p(best class)
    plus geometric prior (which includes a bonus per digit, so that reading more digits is not
    penalised by the extra factors of the product), minus the cost of every cut; fragments may be left
    out as marks.

    cands: this line's candidates; logp: their score as one digit without the prior (log-probability
    of the best class, plus the verifier's terms); pair_score: each candidate's whole score when read
    as two merged digits (-inf: not a pair), or None. Returns ((index of the chosen candidate, read as
    a pair), indices of the pieces left out), both left to right."""
    n = len(line.pieces)
    best = np.full(n + 1, -np.inf)
    best[0] = 0.0
    back: list[tuple[int, int, bool] | None] = [None] * (n + 1)  # (previous position, candidate or -1, pair)
    starting: dict[int, list[int]] = {}
    for c, cand in enumerate(cands):
        starting.setdefault(cand.first, []).append(c)
    for i in range(n):
        if best[i] == -np.inf:
            continue
        if line.pieces[i].skippable:  # leave it out as a mark; a piece cut off a digit rarely is one
            score = best[i] - line.cuts[i + 1] - (cfg.skip_cut_penalty if line.pieces[i].pixels is not None else 0)
            if score > best[i + 1]:
                best[i + 1], back[i + 1] = score, (i, -1, False)
        for c in starting.get(i, []):
            j = cands[c].last + 1
            for two, own in ((False, logp[c] + cands[c].prior),
                             (True, pair_score[c] if pair_score is not None else -np.inf)):
                score = best[i] + own - line.cuts[j]
                if score > best[j]:
                    best[j], back[j] = score, (i, c, two)
    chosen: list[tuple[int, bool]] = []
    skipped: list[int] = []
    if best[n] == -np.inf:  # cannot happen: every piece is a fragment or has a one-piece candidate
        return chosen, list(range(n))
    pos = n
    while pos > 0:
        prev, c, two = back[pos]
        if c < 0:
            skipped.append(prev)
        else:
            chosen.append((c, two))
        pos = prev
    return chosen[::-1], skipped[::-1]
