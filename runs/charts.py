"""Geometry for the small server-rendered SVG charts (the CSP allows no chart script and no inline
style, so bars are SVG rects whose sizes are attributes and whose colours come from app.css)."""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache

from django.utils import timezone

CHART_WIDTH, CHART_HEIGHT, CHART_AXIS = 720, 140, 18
SPARK_WIDTH, SPARK_HEIGHT = 84, 20


@dataclass(frozen=True)
class Segment:
    x: float
    y: float
    width: float
    height: float
    tone: str


@dataclass(frozen=True)
class Bar:
    label: str
    title: str
    segments: list[Segment]
    tick: str  # the axis label under this bar, or ""
    x: float


def bucket(by_status: dict[str, int]) -> tuple[int, int, int]:
    completed = by_status.get("completed", 0)
    failed = by_status.get("failed", 0)
    return completed, failed, sum(by_status.values()) - completed - failed


def hourly_bars(tallies: dict[datetime, dict[str, int]], hours: int = 24) -> list[Bar]:
    """One stacked bar per hour (completed at the bottom, then other, failed on top)."""
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    slots = [now - timedelta(hours=hours - 1 - i) for i in range(hours)]
    counts = [bucket(tallies.get(hour, {})) for hour in slots]
    peak = max((sum(c) for c in counts), default=0) or 1
    step = CHART_WIDTH / hours
    width = step * 0.72
    plot = CHART_HEIGHT - CHART_AXIS
    bars = []
    for i, (hour, (completed, failed, other)) in enumerate(zip(slots, counts)):
        x = round(i * step + (step - width) / 2, 1)
        y = float(plot)
        segments = []
        for value, tone in ((completed, "ok"), (other, "other"), (failed, "bad")):
            if value:
                h = max(round(plot * value / peak, 1), 1.5)
                y -= h
                segments.append(Segment(x, round(y, 1), round(width, 1), h, tone))
        label = hour.strftime("%H:00")
        title = f"{hour:%Y-%m-%d %H:00} UTC: {completed} completed, {failed} failed, {other} other"
        tick = label if i % 4 == 3 or i == hours - 1 else ""
        bars.append(Bar(label, title, segments, tick, round(i * step + step / 2, 1)))
    return bars


@dataclass(frozen=True)
class Spark:
    x: float
    y: float
    height: float
    title: str


def sparkline(days: dict[date, int], today: date, length: int = 14) -> list[Spark]:
    """Failures per day for the last `length` days, as small bars."""
    span = [today - timedelta(days=length - 1 - i) for i in range(length)]
    counts = [days.get(d, 0) for d in span]
    peak = max(counts, default=0) or 1
    return [_day(i, day, n, peak, length) for i, (day, n) in enumerate(zip(span, counts))]


@lru_cache(maxsize=4096)
def _day(i: int, day: date, n: int, peak: int, length: int) -> Spark:
    # Cached: /failures/ draws 14 days a row, and most are alike across groups (no failures that
    # day, or one of a few heights).
    h = max(round(SPARK_HEIGHT * n / peak, 1), 1.0 if n else 0.5)
    return Spark(round(i * (SPARK_WIDTH / length), 1), round(SPARK_HEIGHT - h, 1), h, f"{day}: {n}")


@dataclass(frozen=True)
class Split:
    """A job run's completed / failed / other shares as widths (percent) of a bar."""

    completed: float
    failed: float
    other: float

    @property
    def failed_x(self) -> float:
        return self.completed

    @property
    def other_x(self) -> float:
        return self.completed + self.failed


def split(completed: int, failed: int, other: int) -> Split:
    total = completed + failed + other
    if not total:
        return Split(0, 0, 0)
    return Split(
        round(100 * completed / total, 2), round(100 * failed / total, 2), round(100 * other / total, 2)
    )
