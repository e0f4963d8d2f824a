"""docs/formats.md's value tables are what the formats write (tests/format_docs.py makes them
by encoding each example with each format)."""

from __future__ import annotations

from tests.format_docs import PAGE, render


def test_the_value_tables_are_what_the_formats_write() -> None:
    page = PAGE.read_text(encoding="utf-8")
    assert render(page) == page, "run: python -m tests.format_docs --write"


def test_readme_points_at_the_page_instead_of_repeating_it() -> None:
    readme = (PAGE.parents[1] / "README.md").read_text(encoding="utf-8")
    assert "(docs/formats.md)" in readme
    assert "<!-- values:start -->" not in readme
