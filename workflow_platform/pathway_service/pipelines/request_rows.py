"""The dataflows' first step: the rows a request carries, one Pathway row each (imports pathway)."""

from collections.abc import Sequence

import pathway as pw


def request_rows(requests: pw.Table, load: pw.UDF, fields: Sequence[str]) -> pw.Table:
    """One row per tuple `load` returns for each request's staged input, its items named `fields` in order,
    with `query_id`: the id of the request it came from (what the answer is joined back on)."""
    return (
        requests.select(row=load(pw.this.request))
        .flatten(pw.this.row, origin_id="query_id")
        .select(pw.this.query_id, **{name: pw.this.row[index] for index, name in enumerate(fields)})
    )
