"""How ``edgeq`` commands print notes, device votes and an alias move."""
from __future__ import annotations

import click

from registry_tools import judge, promotion

SHOWN = 20  # devices listed per kind of vote without --explain


def echo_notes(notes: list[str] | tuple[str, ...]) -> None:
    for note in notes:
        click.echo(f"  note: {note}")


def echo_votes(lines: list[tuple[str, judge.Vote]], label_width: int, none_yet: str, show_all: bool = False) -> None:
    """One line per device (at most SHOWN per label unless ``show_all``): label, device, why."""
    shown: list[tuple[str, str, str]] = []
    hidden: dict[str, int] = {}
    for label, v in lines:
        if show_all or sum(1 for s in shown if s[0] == label) < SHOWN:
            shown.append((label, v.device, v.why))
        else:
            hidden[label] = hidden.get(label, 0) + 1
    echo_devices(shown, label_width, none_yet)
    for label, n in hidden.items():
        click.echo(f"  … and {n} more {label} (--explain lists every device)")


def echo_devices(lines: list[tuple[str, str, str]], label_width: int, none_yet: str) -> None:
    """One line per device: its verdict's label, the device, why — or ``none_yet`` when no device reported."""
    width = max((len(device) for _, device, _ in lines), default=0)
    for label, device, why in lines:
        click.echo(f"  {label:<{label_width}}  {device:<{width}}  {why}")
    if not lines:
        click.echo(f"  {none_yet}")


def echo_promotion(model: str, alias: str, result: promotion.Promotion) -> None:
    stage = " (stage Production set too)" if result.stage_set else ""
    click.echo(f"{model}: {alias} → v{result.version}{stage}; was {('v' + result.previous) if result.previous else 'unset'}")
