"""The report as a list of sections, and its renderers: one for Markdown, one for HTML.

A section is a heading with an optional note, table and figures; the report is the list of
them, so that report.md and index.html cannot say different things.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

import pandas as pd
from tabulate import tabulate

STYLE = """body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}
table.t{border-collapse:collapse;font-size:0.9em} table.t td,table.t th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}
img{max-width:100%;margin:1em 0}"""


@dataclass(frozen=True)
class Section:
    title: str
    note: str = ""  # one paragraph of plain text
    table: pd.DataFrame | None = None
    figures: tuple[str, ...] = ()  # paths relative to the report's folder
    level: int = 2  # heading level: 1 for the report's title, 3 under a level-2 section

    @property
    def slug(self) -> str:
        """The section's file name stem (tables/<slug>.html): its title in lower-case words joined by "_"."""
        return "_".join(re.findall(r"[a-z0-9]+", self.title.lower()))


def interval(low: float, high: float) -> str:
    """A 95 % interval of a fraction, in %: "[low, high]"."""
    return f"[{100 * low:.1f}, {100 * high:.1f}]"


def with_interval(value: float, low: float, high: float) -> str:
    """"value [low, high]" in %; "value [—]" where there is no interval, "—" where no value.

    Always text: a column of bare numbers would be reformatted by the Markdown writer.
    """
    if pd.isna(value):
        return "—"
    return f"{100 * value:.1f} {'[—]' if pd.isna(low) else interval(low, high)}"


def _markdown_table(table: pd.DataFrame) -> str:
    # Text columns as written ("0.0625", "0.000353" are no floats of 2 decimals); missing cells as in
    # HTML (tabulate would print NaN as "nan", and reads only None as missing).
    text = [i for i, dtype in enumerate(table.dtypes) if not pd.api.types.is_numeric_dtype(dtype)]
    cells = table.astype(object).where(table.notna(), None).values.tolist()
    return tabulate(cells, headers=list(table.columns), tablefmt="pipe", floatfmt=".2f", missingval="—", disable_numparse=text)


def _html_table(table: pd.DataFrame) -> str:
    return table.to_html(index=False, float_format=lambda v: f"{v:.2f}", na_rep="—", border=0, classes="t")


def to_markdown(sections: list[Section]) -> str:
    parts = []
    for section in sections:
        parts.append(f"{'#' * section.level} {section.title}")
        if section.note:
            parts.append(section.note)
        if section.table is not None:
            parts.append(_markdown_table(section.table))
        parts += [f"![{figure.rsplit('/', 1)[-1].removesuffix('.png')}]({figure})" for figure in section.figures]
    return "\n\n".join(parts) + "\n"


def section_html(section: Section) -> str:
    parts = [f"<h{section.level}>{html.escape(section.title)}</h{section.level}>"]
    if section.note:
        parts.append(f"<p>{html.escape(section.note)}</p>")
    if section.table is not None:
        parts.append(_html_table(section.table))
    parts += [f'<img src="{html.escape(figure)}" alt="{html.escape(figure)}">' for figure in section.figures]
    return "\n".join(parts)


def to_html(sections: list[Section], title: str) -> str:
    body = "\n".join(section_html(section) for section in sections)
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>\n'
        f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n"
    )
