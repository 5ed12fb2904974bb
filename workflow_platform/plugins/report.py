"""Reports for people: a sales report (the sales-aggregation-pipeline's result) as a self-contained HTML page
with SVG charts, and a short markdown preview shown on the step in the Dagster UI."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import Field

from workflow_platform.language.actions import Action, ActionInput, ActionOutput, StepContext, plugin

CHART_WIDTH = 640
BAR_HEIGHT = 22


class SalesReportInput(ActionInput):
    title: str = Field("Daily sales report", max_length=200)
    subtitle: str = Field("", max_length=500)
    report: dict[str, Any] = Field(description="the sales-aggregation-pipeline's result")


def bar_chart(items: list[tuple[str, float]], unit: str = "") -> dict[str, Any]:
    """Horizontal bars, scaled to the largest value (negative values, e.g. net refunds, drawn as empty)."""
    peak = max((value for _, value in items), default=0) or 1
    label_width = 180
    span = CHART_WIDTH - label_width - 90
    bars = [
        {
            "label": label,
            "value": value,
            "y": index * (BAR_HEIGHT + 6),
            "width": max(0.0, value) / peak * span,
            "text": f"{unit}{value:,.2f}",
        }
        for index, (label, value) in enumerate(items)
    ]
    return {
        "bars": bars,
        "height": len(bars) * (BAR_HEIGHT + 6) + 4,
        "label_width": label_width,
        "bar_height": BAR_HEIGHT,
    }


def line_chart(points: list[tuple[str, float]]) -> dict[str, Any]:
    height, left, bottom = 180, 50, 24
    peak = max((value for _, value in points), default=0) or 1
    step = (CHART_WIDTH - left - 10) / max(1, len(points) - 1)
    coordinates = [
        (left + index * step, height - bottom - max(0.0, value) / peak * (height - bottom - 10), label, value)
        for index, (label, value) in enumerate(points)
    ]
    return {
        "points": " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in coordinates),
        "dots": coordinates,
        "height": height,
        "baseline": height - bottom,
        "peak": peak,
    }


@lru_cache(maxsize=1)
def _templates() -> Environment:
    return Environment(
        loader=PackageLoader("workflow_platform.plugins", "templates"), autoescape=select_autoescape(["html"])
    )


def sales_report_charts(report: dict[str, Any]) -> dict[str, Any]:
    metrics = report.get("metrics", {})
    regions = metrics.get("regionalBreakdown", {}).get("regions", [])
    products = metrics.get("topProducts", {}).get("products", [])
    hours = metrics.get("hourlyTrend", {}).get("hours", [])
    charts = {}
    if regions:
        charts["regions"] = bar_chart([(str(r["region"]), r["revenue"]) for r in regions], "$")
    if products:
        charts["products"] = bar_chart([(str(p["product"]), p["revenue"]) for p in products], "$")
    if hours:
        charts["hours"] = line_chart([(str(h["hour"]), h["revenue"]) for h in hours])
    return charts


def markdown_preview(title: str, report: dict[str, Any]) -> str:
    """The report at a glance, complete: the total, every region, every top product, the busiest hour."""
    metrics = report.get("metrics", {})
    total = metrics.get("totalRevenue", {})
    lines = [f"**{title}**", ""]
    if total:
        lines.append(
            f"Revenue **${total.get('revenue', 0):,.2f}** from {total.get('orderLines', 0):,} order lines, {total.get('units', 0):,} units"
        )
    regions = metrics.get("regionalBreakdown", {}).get("regions", [])
    if regions:
        lines += ["", "| region | revenue | share |", "|---|---:|---:|"]
        lines += [f"| {r['region']} | ${r['revenue']:,.2f} | {(r.get('share') or 0):.1%} |" for r in regions]
    products = metrics.get("topProducts", {}).get("products", [])
    if products:
        lines += ["", "| top product | revenue |", "|---|---:|"]
        lines += [f"| {p['product']} | ${p['revenue']:,.2f} |" for p in products]
    hours = metrics.get("hourlyTrend", {}).get("hours", [])
    if hours:
        busiest = max(hours, key=lambda h: h["revenue"])
        lines += ["", f"Busiest hour: {busiest['hour']} (${busiest['revenue']:,.2f})"]
    return "\n".join(lines)


def render_sales_report(spec: SalesReportInput, ctx: StepContext) -> ActionOutput:
    charts = sales_report_charts(spec.report)
    html = (
        _templates()
        .get_template("sales_report.html")
        .render(
            title=spec.title,
            subtitle=spec.subtitle,
            report=spec.report,
            metrics=spec.report.get("metrics", {}),
            charts=charts,
        )
    )
    result = {"html": html, "size": len(html.encode()), "charts": sorted(charts)}
    return ActionOutput(result, preview_markdown=markdown_preview(spec.title, spec.report))


REPORT = plugin(
    "report",
    "Render reports for people (HTML with charts)",
    None,
    Action(
        "salesReportHtml",
        SalesReportInput,
        lambda _, spec, ctx: render_sales_report(spec, ctx),
        "a sales report as an HTML page with charts",
    ),
)
