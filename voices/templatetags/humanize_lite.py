"""Short numbers for the admin dashboard (django.contrib.humanize is not installed)."""
from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def count_short(value: object) -> str:
    """1234 -> "1.2k", 2500000 -> "2.5M"."""
    try:
        n = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= limit:
            return f"{n / limit:.1f}{suffix}"
    return f"{n:.0f}"


@register.filter
def seconds_short(value: object) -> str:
    """Seconds as "42 s", "12.5 min" or "3.2 h"."""
    try:
        s = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"
