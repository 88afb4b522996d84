"""Message texts for the boards (pure): templates filled in Indonesian and English, fitted to a board.

A message is one page per language — Indonesian first, then English — that the board
alternates; a board of one page shows the Indonesian page only. A template lists wordings
from the longest to the shortest; the first whose every line fits the board (lines per page,
characters per line, the board's character set) is used. Text is upper-cased (the boards'
character sets are upper case); nothing is cut or abbreviated silently: when no wording fits,
the message is refused for that board with the reason.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from datetime import datetime, timedelta

from controllers.vms_config import BoardSite, Language, Template

LANGUAGES: tuple[Language, ...] = ("id", "en")
Params = Mapping[str, tuple[str, str]]  # placeholder -> (Indonesian, English)


class TextError(ValueError):
    """A template names a placeholder that was not given."""


def _fill(line: str, params: Params, language: Language) -> str:
    index = LANGUAGES.index(language)
    names = [field for _, field, _, _ in string.Formatter().parse(line) if field is not None]
    missing = [n for n in names if n not in params]
    if missing:
        raise TextError(f"placeholder(s) {missing} not given for {line!r}")
    return line.format_map({n: params[n][index] for n in names}).upper()


def _problem(board: BoardSite, page: list[str]) -> str | None:
    if len(page) > board.lines:
        return f"{len(page)} lines; the board shows {board.lines} lines"
    for line in page:
        if len(line) > board.characters_per_line:
            return f"{line!r} has {len(line)} characters; the board shows {board.characters_per_line} per line"
        bad = sorted(set(line) - board.charset)
        if bad:
            return f"{line!r} holds {', '.join(map(repr, bad))}, outside the board's character set"
    return None


def render(template: Template, params: Params, board: BoardSite, page_time_s: float) -> tuple[list[list[str]] | None, str]:
    """The pages of the first wording of ``template`` that fits ``board`` and ``""``; or None and why none fits.

    ``page_time_s`` (seconds) is the time per page: a board whose minimum page time is longer shows one page.
    """
    languages = LANGUAGES if board.max_pages >= 2 and page_time_s >= board.min_page_time_s else LANGUAGES[:1]
    problem = "the template has no wording"
    for variant in template.variants:
        pages = [[_fill(line, params, lang) for line in (variant.id if lang == "id" else variant.en)] for lang in languages]
        found = next((p for p in (_problem(board, page) for page in pages) if p is not None), None)
        if found is None:
            return pages, ""
        problem = found
    return None, f"no wording fits: {problem}"


def operator_pages(text: str) -> list[list[str]]:
    """An operator's text as pages of lines: ``|`` separates pages, ``/`` lines (``JALAN DITUTUP/PUTAR BALIK|ROAD CLOSED``)."""
    return [[line.strip().upper() for line in page.split("/")] for page in text.split("|")]


def fit_problem(board: BoardSite, pages: list[list[str]]) -> str | None:
    """Why ``pages`` do not fit ``board`` (page count, lines, characters, character set), or None."""
    if not 1 <= len(pages) <= board.max_pages:
        return f"{len(pages)} pages; the board shows 1 to {board.max_pages}"
    return next((p for p in (_problem(board, page) for page in pages) if p is not None), None)


def order_problem(board: BoardSite, pages: list[list[str]], page_time_s: float, now: datetime, until: datetime) -> str | None:
    """Why an operator's message ``pages`` until ``until`` cannot go on ``board`` at ``now`` (the text does not fit, the
    board cannot alternate its pages at ``page_time_s`` seconds each, the expiry is past or beyond the board's
    longest duration, s), or None."""
    problem = fit_problem(board, pages)
    if problem is None and len(pages) > 1 and page_time_s < board.min_page_time_s:
        problem = f"the board needs at least {board.min_page_time_s:g} s per page"
    if problem is not None:
        return f"the text does not fit {board.id}: {problem}"
    if not now < until <= now + timedelta(seconds=board.max_duration_s):
        return f"{until.isoformat()} must be after now ({now.isoformat()}) and within {board.max_duration_s:g} s"
    return None
