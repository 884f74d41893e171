"""The dashboard's HTML: a pure function of the view the daemon gathers (``dashboard.py``).

Rendered on the server, so the first response already holds every table and works without
JavaScript; the page's script only fetches the same live part again (``/ui/live``) and
swaps it in. Every value from a job or a request is escaped here, in one place; the charts
are inline SVG drawn here, so the page loads nothing but its own two static files.
"""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import urlencode

from tensorfab.jobs.progress import Progress

STATE_ORDER = ("running", "queued", "preempted", "held", "succeeded", "failed", "cancelled")
CHART_WIDTH = 460
LABEL_WIDTH = 110
BAR_HEIGHT = 16
SERIES = (("gpu_hours", "GPU-hours", "bar-gpu"), ("cpu_hours", "CPU-hours", "bar-cpu"))


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def duration(seconds: float | None) -> str:
    """``45 s``, ``4m 05s``, ``1h 02m``, ``2d 03h``; a dash when unknown."""
    if seconds is None:
        return "–"
    s = round(max(0.0, seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def _gib(n: float | None) -> str:
    return "–" if n is None else f"{n / 2**30:.1f} GiB"


def _num(value: float | None, fmt: str) -> str:
    return "–" if value is None else fmt.format(value)


def document(title: str, body: str) -> str:
    """A whole page around ``body``, with the package's stylesheet and script."""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title>"
        '<link rel="icon" href="data:,">'  # no favicon request
        '<link rel="stylesheet" href="/static/dashboard.css">'
        '<script src="/static/dashboard.js" defer></script>'
        f"</head><body>{body}</body></html>\n"
    )


def login_page(error: str | None = None) -> str:
    """The token form a browser sends once; the daemon answers with an HttpOnly cookie."""
    problem = f'<p class="error" role="alert">{_e(error)}</p>' if error else ""
    body = (
        '<main class="login"><h1>tensorfab jobs</h1>'
        "<p>This daemon needs a token (the one <code>TENSORFAB_TOKEN</code> holds for the CLI).</p>"
        f"{problem}"
        '<form method="post" action="/login">'
        '<label>Token <input type="password" name="token" autocomplete="current-password"'
        " required autofocus></label> <button>Log in</button></form></main>"
    )
    return document("tensorfab jobs: log in", body)


def dashboard_page(view: dict[str, Any]) -> str:
    """The dashboard: header, an optional note, and the live part."""
    who = view["user"]
    logout = (
        '<form method="post" action="/logout" class="inline"><button>Log out</button></form>'
        if view["login"]
        else ""
    )
    note = f'<p class="note" role="status">{_e(view["note"])}</p>' if view.get("note") else ""
    body = (
        f"<header><h1>tensorfab jobs</h1><span>node <b>{_e(view['node'])}</b></span>"
        f'<span class="who">{_e(who)}</span>{logout}'
        '<span class="updated">updated <time id="updated">now</time></span></header>'
        f'{note}<main id="live" data-refresh-s="{view["refresh_s"]}">{live_part(view)}</main>'
    )
    return document(f"tensorfab jobs: {view['node']}", body)


def live_part(view: dict[str, Any]) -> str:
    """What the page refreshes: counts, running jobs, devices, the job table, the charts."""
    return (
        _summary(view["counts"])
        + _running(view["running"])
        + _devices(view["devices"])
        + _jobs(view)
        + _accounting(view["usage"], view["usage_days"])
    )


def _summary(counts: dict[str, int]) -> str:
    items = "".join(
        f'<li class="state-{s}"><b>{counts.get(s, 0)}</b> {s}</li>' for s in STATE_ORDER
    )
    return f'<section id="summary"><ul class="counts">{items}</ul></section>'


def _table(table_id: str, heads: tuple[str, ...], rows: list[str], empty: str) -> str:
    head = "".join(f"<th scope=col>{h}</th>" for h in heads)
    body = "".join(rows) or f'<tr><td colspan="{len(heads)}" class="empty">{empty}</td></tr>'
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _who(job: dict[str, Any]) -> str:
    return f"{_e(job['user'])}<span class=team>/{_e(job['team'])}</span>"


def _devices_of(job: dict[str, Any]) -> str:
    return _e(", ".join(job["devices"])) if job["devices"] else "–"


RUNNING_HEADS = (
    "Job",
    "Name",
    "User/team",
    "Devices",
    "Epoch",
    "Progress",
    "Loss",
    "Metric",
    "Samples/s",
    "MFU",
    "ETA",
)


def _running(jobs: list[dict[str, Any]]) -> str:
    rows = [_running_row(job, job.get("progress")) for job in jobs]
    table = _table("running-jobs", RUNNING_HEADS, rows, "nothing runs")
    return f'<section id="running"><h2>Running</h2>{table}</section>'


def _bar(p: Progress) -> str:
    if p.fraction is None:
        return f"step {_e(p.step or 0)}"
    return (
        f'<progress max="1" value="{p.fraction:.4f}"></progress> '
        f'<span class="steps">{p.step}/{p.total_steps}</span>'
    )


def _running_row(job: dict[str, Any], p: Progress | None) -> str:
    lead = (
        f'<tr data-job="{job["id"]}"><td>{job["id"]}</td><td>{_e(job["name"])}</td>'
        f"<td>{_who(job)}</td><td>{_devices_of(job)}</td>"
    )
    if p is None:
        return lead + '<td colspan="7" class="empty">no progress logged (yet)</td></tr>'
    metric = "–" if p.metric is None else f"{_e(p.metric)} {p.metric_value:.4f}"
    cells = (
        _num(p.epoch, "{}"),
        _bar(p),
        _num(p.loss, "{:.4f}"),
        metric,
        _num(p.samples_per_s, "{:,.0f}"),
        "n/a" if p.mfu is None else f"{p.mfu:.1%}",
        duration(p.eta_s),
    )
    names = ("epoch", "progress", "loss", "metric", "sps", "mfu", "eta")
    return (
        lead
        + "".join(f'<td class="{n}">{c}</td>' for n, c in zip(names, cells, strict=True))
        + "</tr>"
    )


def _reading(readings: dict[str, Any] | None, key: str, fmt: str) -> str:
    value = (readings or {}).get(key)
    return "–" if value is None else fmt.format(value)


def _device_row(d: dict[str, Any]) -> str:
    kind = '<span class="badge">simulated</span>' if d["simulated"] else ""
    job = f"{d['job']} ({_e(d['user'])}/{_e(d['team'])})" if d["job"] else "idle"
    if d["simulated"]:
        readings = '<td colspan="3" class="empty">simulated: no readings</td>'
    else:
        r = d["readings"]
        used = _gib((r or {}).get("memory_used_bytes"))
        readings = (
            f"<td>{_reading(r, 'utilization_pct', '{:.0f} %')}</td>"
            f"<td>{used} / {_gib(d['memory_bytes'])}</td>"
            f"<td>{_reading(r, 'power_w', '{:.0f} W')}</td>"
        )
    return f"<tr><td>{_e(d['id'])} {kind}</td><td>{_e(d['name'])}</td><td>{job}</td>{readings}</tr>"


def _devices(devices: list[dict[str, Any]]) -> str:
    heads = ("Device", "Model", "Job", "Utilisation", "Memory", "Power")
    table = _table("device-table", heads, [_device_row(d) for d in devices], "no GPUs")
    return f'<section id="devices"><h2>Devices</h2>{table}</section>'


JOB_HEADS = ("ID", "Name", "User/team", "State", "Wait", "Run", "Devices", "Actions")


def _actions(job: dict[str, Any], page: int) -> str:
    forms = []
    for action in job["actions"]:
        url = f"/ui/jobs/{job['id']}/{action}?{urlencode({'page': page})}"
        forms.append(
            f'<form method="post" action="{_e(url)}" class="inline">'
            f'<button class="act-{action}" name="action" value="{action}">{action}</button></form>'
        )
    return "".join(forms)


def _job_row(job: dict[str, Any], page: int) -> str:
    state = job["state"] + (" (stopping)" if job.get("stop_reason") == "cancel" else "")
    return (
        f'<tr data-job="{job["id"]}" data-state="{job["state"]}"><td>{job["id"]}</td>'
        f"<td>{_e(job['name'])}</td><td>{_who(job)}</td>"
        f'<td class="state state-{job["state"]}">{_e(state)}</td>'
        f"<td>{duration(job['wait_s'])}</td><td>{duration(job['run_s'] or None)}</td>"
        f"<td>{_devices_of(job)}</td><td>{_actions(job, page)}</td></tr>"
    )


def _pager(page: int, pages: int, total: int) -> str:
    links = []
    if page > 1:
        links.append(f'<a rel="prev" href="/?page={page - 1}">newer</a>')
    links.append(f"<span>page {page} of {pages} ({total} jobs, newest first)</span>")
    if page < pages:
        links.append(f'<a rel="next" href="/?page={page + 1}">older</a>')
    return f'<nav class="pager">{" ".join(links)}</nav>'


def _jobs(view: dict[str, Any]) -> str:
    page = view["page"]
    rows = [_job_row(job, page) for job in view["jobs"]]
    table = _table("jobs", JOB_HEADS, rows, "no jobs yet: tensorfab jobs submit ...")
    pager = _pager(page, view["pages"], view["total"])
    return f'<section id="queue"><h2>Jobs</h2>{pager}{table}{pager}</section>'


def bar_chart(chart_id: str, title: str, rows: list[dict[str, Any]]) -> str:
    """Horizontal bars of GPU-hours and CPU-hours per row key, as inline SVG."""
    top = max([r[key] for r in rows for key, _, _ in SERIES] + [1e-9])
    span = CHART_WIDTH - LABEL_WIDTH - 70
    height = len(rows) * (2 * BAR_HEIGHT + 8) + 24
    parts = [
        f'<svg id="{chart_id}" class="chart" role="img" aria-label="{_e(title)}" '
        f'width="{CHART_WIDTH}" height="{height}" viewBox="0 0 {CHART_WIDTH} {height}">'
        f"<title>{_e(title)}</title>"
        '<link rel="icon" href="data:,">'  # no favicon request
    ]
    for i, row in enumerate(rows):
        y = 20 + i * (2 * BAR_HEIGHT + 8)
        parts.append(f'<text x="0" y="{y + BAR_HEIGHT}" class="label">{_e(row["key"])}</text>')
        for j, (key, name, css) in enumerate(SERIES):
            w = span * row[key] / top
            yy = y + j * BAR_HEIGHT
            parts.append(
                f'<rect class="{css}" x="{LABEL_WIDTH}" y="{yy}" width="{w:.1f}" '
                f'height="{BAR_HEIGHT - 2}"><title>{_e(row["key"])}: {row[key]:.3f} {name}'
                f"</title></rect>"
                f'<text x="{LABEL_WIDTH + w + 4:.1f}" y="{yy + BAR_HEIGHT - 4}" class="value">'
                f"{row[key]:.2f}</text>"
            )
    legend = "".join(
        f'<rect class="{css}" x="{LABEL_WIDTH + k * 100}" y="2" width="10" height="10"></rect>'
        f'<text x="{LABEL_WIDTH + k * 100 + 14}" y="11" class="legend">{name}</text>'
        for k, (_, name, css) in enumerate(SERIES)
    )
    return "".join(parts) + legend + "</svg>"


def _accounting(usage: dict[str, list[dict[str, Any]]], days: int) -> str:
    charts = []
    for by in ("team", "user"):
        rows = usage[by]
        title = f"GPU-hours and CPU-hours by {by}, last {days} days"
        chart = bar_chart(f"usage-{by}", title, rows) if rows else '<p class="empty">no usage</p>'
        charts.append(f"<figure><figcaption>By {by}</figcaption>{chart}</figure>")
    return (
        f'<section id="accounting"><h2>Usage, last {days} days</h2>'
        f'<div class="charts">{"".join(charts)}</div></section>'
    )
