"""Evidence of repetition: which swings of the counter's zig-zag count, and the repetitions they make.

The counter's tracker cuts the motion into legs, each from one turning point to the next (half a
repetition).  A leg alone is no evidence: setting up, walking about, a pose flailing for a moment
make legs too.  A leg is **confirmed** when it is alike, in duration and in size (within
``rhythm_ratio``; by size alone if frames of it are missing), with

- the leg before last in its run (the same way, one repetition earlier),
- or one of the last two legs confirmed (a rhythm carries over a gap in detection),
- or the leg just before it, when it comes back to within ``_CLOSED`` of its size of where that
  leg began: out and back to the same shape is a cycle by itself (a single squat between rests);
  the first leg of a run is judged so against the way into the run;

and the leg it matched is confirmed with it.  Two kinds of leg match nothing: one whose raw
frames jolt by more than ``roughness_limit`` of its size (and three times the set's confirmed
legs), which is jitter rather than motion, and one smaller than the set's confirmed legs beyond
``rhythm_ratio``, a wiggle at a turning point.  A leg no later leg matched is **rejected** and adds
nothing.

Confirmed legs make **sets**: a leg joins the current set if it is alike with one of the last two
confirmed legs (or lies between the set's legs), else it begins a new set.  A set is established
at ``_SET`` legs (a repetition and a half); until then its legs are held.  A set that ends before
(a **lone** set: a single cycle, say) is a set-up move when it is next to an established set,
before or after it, and slower than that set's legs (picking a bar up, putting it down), and adds
nothing; else it counts (a single squat between rests, a first repetition done quickly).  Legs
held a while (the counter's ``_WAIT``, 8 s) are decided as if nothing came next, so a lone cycle
shows live.

Only confirmed legs add to the count, half a repetition each (the first of a run adds the way from
where tracking began, too: half a repetition for a way as large as that first leg, less for a run
that began mid-way), so the count never goes down, and what is still uncertain waits until
it is decided.  A stream too short to judge (fewer than three legs, none confirmed: a single squat
filmed alone) counts what it holds.  In time order, confirmed legs make :class:`Repetition` events:
one each time their credit passes a whole number, with the frames it began and ended at and a
confidence (how alike its legs were with their matches).
"""
from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

_RECENT = 8  # legs kept: enough for every judgement, which looks back at most two legs
_ROUGHER = 3.0  # a leg this many times rougher than the set's confirmed ones is jitter, not motion
_CLOSED = 0.35  # a leg ending this near (share of its size) where the leg before began closes a cycle
_WHOLE = 0.9  # a way into a run this near its first leg's size is whole (the counter's _STILL: at its turn)
_SET = 3  # confirmed legs alike in a row that make a set: until then its legs are held, not counted


@dataclass(frozen=True)
class Repetition:
    """One counted repetition: its number, the stream indexes where its motion began and ended, and a
    confidence in [0, 1]."""

    index: int
    start: int
    end: int
    confidence: float


class CumulativeCount(float):
    """The cumulative count (a float), carrying the :class:`Repetition` events completed with it."""

    repetitions: tuple[Repetition, ...]

    def __new__(cls, value: float, repetitions: Any = ()) -> CumulativeCount:
        count = super().__new__(cls, value)
        count.repetitions = tuple(repetitions)
        return count

    def __reduce__(self) -> tuple:
        return CumulativeCount, (float(self), self.repetitions)


@dataclass
class Leg:
    """A swing from one turning point to the next (stream indexes of where its motion began and ended)."""

    start: int
    end: int
    size: float
    run: int  # tracking runs: a gap in detection starts the next
    roughness: float  # the raw frames' mean jolt as a share of the size
    first: bool = False  # the first leg of its run, which carries the way into the run
    seen: bool = True  # a person was in every frame of it (else its duration says nothing)
    state: str = "pending"  # "pending", "confirmed" or "rejected"
    credit: float = 0.0  # what it added to the count
    agreement: float = 0.0  # how alike it was with the leg it matched, in (0, 1]
    closure: float = 1e9  # how far it ended from where the leg before it began, as a share of its size
    way_in: int = -1  # the first leg of a run: where the way into the run began to move
    held: bool = False  # confirmed in a set not yet established: its credit waits (see LegBook._join_set)
    group: int = -1  # the set it was confirmed in (numbered in the stream)

    @property
    def duration(self) -> int:
        return max(self.end - self.start, 1)


class LegBook:
    """The recent legs of one stream: their judgement, the count they confirm and their repetitions."""

    def __init__(self, rhythm_ratio: float, roughness_limit: float):
        self.rhythm_ratio = rhythm_ratio
        self.roughness_limit = roughness_limit
        self.legs: deque[Leg] = deque(maxlen=_RECENT)
        self.total = 0  # legs added in the whole stream
        self.credited = 0.0  # the count confirmed so far: it only grows
        self.start_fraction: float | None = None  # the way into the current run, while uncredited
        self.start_size: float | None = None  # and its size (None in snapshots from before it was kept)
        self.reps = 0  # repetitions made so far
        self.progress = 0.0  # credit toward the next repetition
        self.rep_start = -1  # where it began
        self.rep_agreements: list[float] = []
        self.made_upto = -1  # legs ending up to here are in the repetitions made (or rejected)
        self.made: list[Repetition] = []  # made as their legs left the recent ones, not reported yet
        self.group = 0  # the current set's number
        self.set_legs = 0  # its confirmed legs (alike in a row)
        self.after_set = False  # the set before the current one was established
        self.limbo = -1  # a lone set before the current one, waiting on whether the current one is established
        self.held_since = -1  # the stream index since which legs have been held

    # -- what the tracker reports -----------------------------------------------------------
    def add(self, leg: Leg) -> None:
        """A leg has ended; the one before it can no longer be taken back, so it is judged now."""
        self._judge_last()
        self._keep(leg)
        self.total += 1

    def take_back(self) -> None:
        """The last leg was no turn after all (a glitch): the tracker carries it on."""
        self.legs.pop()
        self.total -= 1

    def close_run(self, run: int, in_progress: float, end: int) -> None:
        """The run ends (a gap in detection, or the stream's end): its last leg is judged, its pending
        legs count if they keep the confirmed rhythm, and the leg in progress adds ``in_progress``
        if the run was in stride."""
        self._judge_last()
        for leg in self._run(run):
            if leg.state == "pending":
                match = self._rhythm_match(leg)
                if match is not None:
                    self._confirm(leg, match)
                else:
                    leg.state = "rejected"
        legs = self._run(run)
        if legs and legs[-1].state == "confirmed" and in_progress > 0:
            self._credit(Leg(legs[-1].end, end, 0.0, run, 0.0, state="confirmed", agreement=legs[-1].agreement,
                             held=legs[-1].held, group=legs[-1].group), in_progress)

    def final(self, run: int, in_progress: float, begin: int, end: int) -> list[Repetition]:
        """The stream has ended; the repetitions it completes are returned.  Too short to judge (fewer than three legs, none confirmed): every
        leg, the way into it and the leg in progress (from ``begin`` without a leg) count, with no
        evidence (confidence 0.5)."""
        if self.total < 3 and self.credited == 0 and not any(leg.held for leg in self.legs):
            for leg in self.legs:
                leg.state, leg.agreement = "confirmed", 0.5
                self._credit(leg, 0.5 + ((self.start_fraction or 0.0) if leg.first else 0.0))
            if self.start_fraction and not self.legs:  # only the way into the run
                in_progress += self.start_fraction
            last = self.legs[-1].end if self.legs else begin
            if in_progress > 0:
                self._credit(Leg(last, end, 0.0, run, 0.0, state="confirmed", agreement=0.5), in_progress)
            self.start_fraction = None
        else:
            self.close_run(run, in_progress, end)
            self.settle_lone()
        return self._report(final=True)

    def settle_lone(self) -> None:
        """Decide what waits as if nothing came next (the stream ended, or legs were held too long):
        the current set, if lone, counts unless it is a put-down move; a lone set before it counts."""
        if 0 < self.set_legs < _SET:
            self._settle(self.group, keep=self._lone_counts(self.group))
        self._settle(self.limbo, keep=True)  # (had the current set been established, it was settled then)

    def settle_waiting(self, now: int, wait: int) -> None:
        """Legs held for ``wait`` stream indexes (since ``now`` was first seen with legs held) are
        decided as if nothing came next: a lone cycle shows within seconds, not only once the
        next set is established or the stream ends (a set's own first legs are established well
        within that unless its legs last seconds each)."""
        if not any(leg.held for leg in self.legs):
            self.held_since = -1
        elif self.held_since < 0:
            self.held_since = now
        elif now - self.held_since >= wait:
            self.settle_lone()
            self.held_since = -1

    def last_confirmed(self) -> bool:
        return bool(self.legs) and self.legs[-1].state == "confirmed" and not self.legs[-1].held

    def repetitions(self) -> list[Repetition]:
        """The repetitions completed since the last call."""
        return self._report()

    def _report(self, final: bool = False) -> list[Repetition]:
        made, self.made = self.made + self._make_repetitions(final), []
        return made

    def _keep(self, leg: Leg) -> None:
        """Add to the recent legs; the oldest, when it leaves them, is first made into repetitions
        (a window can hold more legs than are kept: jumping jacks take ten frames a leg)."""
        if len(self.legs) == self.legs.maxlen:
            lone = self.legs[0].group
            if self.legs[0].held:  # decided now: lone as far as the recent legs tell
                self._settle(lone, keep=lone == self.limbo or self._lone_counts(lone))
            self.made += self._make_repetitions()
        self.legs.append(leg)

    # -- judgement ----------------------------------------------------------------------------
    def _run(self, run: int) -> list[Leg]:
        return [leg for leg in self.legs if leg.run == run]

    def _rough(self, leg: Leg) -> bool:
        confirmed = [d.roughness for d in self.legs if d.state == "confirmed" and d.size > 0]
        bar = self.roughness_limit
        if confirmed:
            bar = max(bar, _ROUGHER * float(np.median(confirmed)))
        return leg.roughness > bar

    def _small(self, leg: Leg) -> bool:
        """Far smaller than the set's confirmed legs (beyond ``rhythm_ratio``): a wiggle within the motion."""
        confirmed = [d.size for d in self.legs if d.state == "confirmed" and d.size > 0]
        return len(confirmed) >= 2 and leg.size * self.rhythm_ratio < float(np.median(confirmed))

    def _agreement(self, a: Leg, b: Leg) -> float:
        """In (0, 1]: 1 for legs of equal duration and size; 0 when they are not alike at all."""
        if self._rough(a) or self._rough(b) or self._small(a) or self._small(b):
            return 0.0
        durations = min(a.duration, b.duration) / max(a.duration, b.duration) if a.seen and b.seen else 1.0
        sizes = min(a.size, b.size) / max(a.size, b.size, 1e-9)
        return durations * sizes if min(durations, sizes) >= 1 / self.rhythm_ratio else 0.0

    def _rhythm_match(self, leg: Leg) -> Leg | None:
        """One of the last two confirmed legs (one each way) that ``leg`` is alike with."""
        confirmed = [d for d in self.legs if d.state == "confirmed" and d.size > 0 and d is not leg][-2:]
        return max(confirmed, key=lambda d: self._agreement(d, leg), default=None) if any(
            self._agreement(d, leg) > 0 for d in confirmed) else None

    def _judge_last(self) -> None:
        """Judge the last leg: alike with the leg before last in its run, or with the confirmed rhythm."""
        if not self.legs or self.legs[-1].state != "pending":
            return
        leg, run = self.legs[-1], self._run(self.legs[-1].run)
        partner = run[-3] if len(run) >= 3 else None
        if partner is not None and partner.state != "rejected" and self._agreement(partner, leg) > 0:
            self._confirm(partner, leg)
            self._confirm(leg, partner)
        else:
            match = self._rhythm_match(leg)
            back = run[-2] if len(run) >= 2 else None
            if match is not None:
                self._confirm(leg, match)
            elif leg.closure <= _CLOSED and (back is None) == leg.first and self._agreement(back or leg, leg) > 0:
                # out and back to where it began (the way into the run, or the leg before), alike: a cycle by itself
                self._confirm(back or leg, leg)
                self._confirm(leg, back or leg)
        if partner is not None and partner.state == "pending":
            partner.state = "rejected"  # its later match was its last chance

    def _confirm(self, leg: Leg, match: Leg) -> None:
        leg.agreement = max(leg.agreement, self._agreement(leg, match))
        if leg.state == "confirmed":
            return
        self._join_set(leg)
        leg.state = "confirmed"
        credit = 0.5
        if leg.first and self.start_fraction is not None:
            credit += self._way_in(leg)  # the way into the run's first leg counts with it
            self.start_fraction = None
        self._credit(leg, credit)

    def _way_in(self, first: Leg) -> float:
        """The way into a run as a share of a repetition: half of its size over its first leg's.  So
        a run that began mid-way counts what it saw of it, and one that began at rest counts half a
        repetition, whatever a leg before a gap or a cut (of another person, perhaps) measured."""
        if self.start_size is None:
            return self.start_fraction or 0.0  # as measured when it ended (against the leg before)
        return 0.5 * min(1.0, self.start_size / (_WHOLE * max(first.size, 1e-9)))

    def _join_set(self, leg: Leg) -> None:
        """A leg about to be confirmed joins the current set if it is alike with one of the last two
        confirmed legs or lies between the set's legs (a leg matched one repetition later, when
        the way down and the way up differ in tempo); else it begins a new set.  A set is
        established at ``_SET`` legs; until then its legs are held (see :meth:`_next_set`)."""
        confirmed = [d for d in self.legs if d.state == "confirmed" and d is not leg][-2:]
        inside = bool(confirmed) and leg.end <= confirmed[-1].end
        if not inside and not any(self._agreement(d, leg) > 0 for d in confirmed):
            self._next_set()
        self.set_legs += 1
        leg.group, leg.held = self.group, self.set_legs < _SET
        if self.set_legs == _SET:
            self._settle(self.group, keep=True)
            self._settle(self.limbo, keep=not self._set_up_move(self.limbo, self.group))

    def _next_set(self) -> None:
        """The current set ends.  If it is lone (never established), it is a set-up move when next
        to an established set, before or after it, and else a repetition of its own (a single
        squat between rests): so one right after a set is rejected now, and one after a lone set
        waits on the next set, while the lone set before it counts."""
        if self.set_legs:
            established = self.set_legs >= _SET
            if not established:
                self._settle(self.limbo, keep=True)
                if self.after_set:
                    self._settle(self.group, keep=self._lone_counts(self.group))
                else:
                    self.limbo = self.group
            self.after_set = established
        self.group += 1
        self.set_legs = 0

    def _lone_counts(self, group: int) -> bool:
        """The current set, lone, counts unless it follows an established set as a set-up move."""
        return not (self.after_set and self._set_up_move(group, group - 1))

    def _set_up_move(self, lone: int, established: int) -> bool:
        """A lone set beside an established one is a set-up move (picking a bar up, putting it
        down, getting into position) when its legs are slower than the set's; a faster one is a
        repetition done quickly."""
        held = [d.duration for d in self.legs if d.group == lone and d.held]
        legs = [d.duration for d in self.legs if d.group == established and d.state == "confirmed" and not d.held]
        return not held or not legs or float(np.median(held)) > float(np.median(legs))

    def _settle(self, group: int, keep: bool) -> None:
        """The held legs of set ``group`` count (``keep``) or are rejected; a set in limbo leaves it."""
        for held in [d for d in self.legs if d.held and d.group == group]:
            held.held = False
            if keep:
                self.credited += held.credit
            else:
                held.state, held.credit = "rejected", 0.0
        if group == self.limbo:
            self.limbo = -1

    def _credit(self, leg: Leg, credit: float) -> None:
        leg.credit += credit
        if not leg.held:
            self.credited += credit
        if leg not in self.legs:  # the leg in progress at a run's end: kept for the repetitions
            self._keep(leg)

    # -- repetitions --------------------------------------------------------------------------
    def _make_repetitions(self, final: bool = False) -> list[Repetition]:
        """Walk the decided legs in time order; a repetition each time their credit passes a whole number."""
        made = []
        for leg in sorted(self.legs, key=lambda d: d.end):
            if leg.end <= self.made_upto:
                continue
            if (leg.state == "pending" or leg.held) and not final:
                break
            self.made_upto = leg.end
            if leg.state != "confirmed":
                continue
            if self.progress < 1e-9:  # a repetition begins with this leg's motion (or the way into it)
                self.rep_start = leg.way_in if leg.first and leg.credit > 0.5 and leg.way_in >= 0 else leg.start
            self.progress += leg.credit
            self.rep_agreements.append(leg.agreement)
            while self.progress >= 1 - 1e-9:
                self.reps += 1
                made.append(Repetition(self.reps, self.rep_start, leg.end, float(np.mean(self.rep_agreements))))
                self.progress = max(self.progress - 1, 0.0)
                self.rep_start, self.rep_agreements = leg.end, [leg.agreement] if self.progress > 1e-9 else []
        return made

    # -- state --------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        state = {k: v for k, v in vars(self).items() if k not in ("legs", "made")}
        state["legs"] = [asdict(leg) for leg in self.legs]
        state["made"] = [asdict(repetition) for repetition in self.made]
        return state

    def restore(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            if k not in ("legs", "made"):
                setattr(self, k, list(v) if isinstance(v, list) else v)
        self.legs = deque((Leg(**leg) for leg in state["legs"]), maxlen=_RECENT)
        self.made = [Repetition(**repetition) for repetition in state.get("made", [])]


@dataclass
class ZigZag:
    """The zig-zag's state: turning points so far and the leg in progress (times are stream indexes)."""

    extremes: int = 0  # confirmed turning points since the last restart
    anchor: np.ndarray | None = None  # shape at the last turning point (or where tracking began)
    anchor_t: int = 0
    left_t: int = 0  # the last frame still at the anchor: where the leg in progress began to move
    peak: np.ndarray | None = None  # the shape farthest from the anchor in the leg in progress
    peak_t: int = 0
    before: np.ndarray | None = None  # the turning point before the anchor, while it can be taken back
    before_t: int = 0
    origin: np.ndarray | None = None  # the shape where the run's tracking began
    way_in_t: int = 0  # where the way into the run began to move
    last_swing: float = 0.0
    t: int = -1  # the frame tracked last
    legs: deque = field(default_factory=lambda: deque(maxlen=_RECENT))  # durations of the recent legs
    swings: deque = field(default_factory=lambda: deque(maxlen=_RECENT))  # and their sizes
    run: int = 0  # tracking runs: a gap in detection starts the next
    book: LegBook | None = None  # the legs so far, judged (see legs.py)

    _ARRAYS = ("anchor", "peak", "before", "origin")

    def snapshot(self) -> dict[str, Any]:
        state = {k: v for k, v in vars(self).items() if k not in self._ARRAYS}
        state.update({k: None if getattr(self, k) is None else getattr(self, k).tolist() for k in self._ARRAYS})
        state["legs"], state["swings"], state["book"] = list(self.legs), list(self.swings), self.book.snapshot()
        return state

    @classmethod
    def restored(cls, state: dict[str, Any], book: LegBook) -> ZigZag:
        tracker = cls(**{k: v for k, v in state.items() if k not in ("legs", "swings", "book", *cls._ARRAYS)})
        book.restore(state["book"])
        tracker.book = book
        for k in cls._ARRAYS:
            setattr(tracker, k, None if state[k] is None else np.asarray(state[k], dtype=np.float64))
        tracker.legs.extend(int(x) for x in state["legs"])
        tracker.swings.extend(float(x) for x in state["swings"])
        return tracker
