"""Secrets in figures: every text of every figure of a demo triage, after ``plots.svg``.

Figures are SVG with their texts as text, which a byte search of the bundle (test_secrets.py)
sees; this goes further. Every check of the triage that has a plot runs against the served
incident demo (one Context per runbook, as the triage does, without notebooks), its figure goes
through ``plots.svg`` (the product path: ``RunbookSession._plot``), and then the SVG and every
matplotlib Text of the figure (titles, tick labels made at draw time, legends, annotations, axis
labels) are searched
for every secret in play: the demo application role's password (in ``CREATE ROLE .. PASSWORD``
SQL that pg_stat_statements recorded), the database password from Secrets Manager and the AWS
secret access key signing the calls.
"""

from __future__ import annotations

import re

import boto3
import pytest
import yaml
from matplotlib.figure import Figure
from matplotlib.text import Text

from rmsops.core import secrets
from rmsops.core.db import secret_password
from rmsops.render import plots
from tests.test_secrets import with_real_keys

AWS_SECRET = "rmsopsFIGUREsecretKEY/0a1b2c3d4e5f60718293+zz"
PGPASSWORD = "pg-env-figure-password-7c41e09b"
_CREATE_ROLE = re.compile(r"\bCREATE\s+ROLE\s+\"?(\w+)\"?.*?\bPASSWORD\s+'((?:[^']|'')+)'",
                          re.IGNORECASE | re.DOTALL)
PREFIX = 8  # labels are cut (a statement at 48 characters): its start must not show either


def _texts(fig: Figure) -> list[str]:
    """Every text of the figure, as stored and as matplotlib draws it (``\\$`` shown as ``$``)."""
    out = []
    for text in fig.findobj(Text):
        raw = text.get_text()
        if raw:
            out += [raw, text._preprocess_math(raw)[0]]
    return out


@pytest.fixture(scope="module")
def walked(demo_incident, tmp_path_factory):
    """{check id: texts of its figure after plots.svg, and the SVG}, and the secrets in play."""
    from rmsops.core import registry, runbooks
    from rmsops.core.context import Context

    folder = tmp_path_factory.mktemp("secrets-figures")
    env_file, monkeypatch = with_real_keys(demo_incident.env_file, folder, AWS_SECRET, PGPASSWORD)
    settings = yaml.safe_load(env_file.read_text())
    figures: dict[str, list[str]] = {}
    role_passwords: dict[str, str] = {}
    findings = []
    try:
        for runbook in runbooks.triage_selection():
            specs = [s for s in registry.for_runbook(runbook.stem) if s.plot is not None]
            if not specs:
                continue
            ctx = Context.open(env_file, window="1h", runbook=runbook.stem)
            try:
                if runbook.stem == "18-escalation":
                    ctx.prior_findings = findings
                for spec in specs:
                    result = ctx.run(spec.id)
                    findings += result.findings
                    if result.data is None:  # as RunbookSession.run: no data, no plot
                        continue
                    fig = spec.plot(result, ctx)
                    svg = plots.svg(fig)  # draws: tick labels made now
                    figures[spec.id] = [*_texts(fig), svg.decode()]
                    if spec.id == "db.queries.slow":  # the raw SQL, before any redaction
                        sql = result.data[result.data["query"].astype(str).str.contains("PASSWORD", case=False)]
                        for query in sql["query"]:
                            role_passwords |= {role: p.replace("''", "'") for role, p in _CREATE_ROLE.findall(query)}
                        # whether those statements are in the top 10 by total time varies from run to
                        # run: the same plot over the same rows, only those statements, shows them
                        result.data = sql
                        fig = spec.plot(result, ctx)
                        svg = plots.svg(fig)
                        figures[f"{spec.id} (its PASSWORD statements)"] = [*_texts(fig), svg.decode()]
            finally:
                ctx.close()
        secretsmanager = boto3.client("secretsmanager", endpoint_url=settings["aws"]["endpoint_url"],
                                      region_name=settings["aws"]["region"])
        db_password = secret_password(secretsmanager.get_secret_value(
            SecretId=settings["database"]["password_secret"])["SecretString"])
    finally:
        monkeypatch.undo()
    in_play = {"aws secret key": AWS_SECRET, "PGPASSWORD": PGPASSWORD, "database password": db_password}
    in_play |= {f"role {role}'s password (CREATE ROLE SQL)": p for role, p in role_passwords.items()}
    return figures, in_play


def test_no_secret_in_any_text_of_any_figure_of_a_triage(walked):
    figures, in_play = walked
    assert "role rms_app's password (CREATE ROLE SQL)" in in_play, \
        "the demo's CREATE ROLE .. PASSWORD statement was not in pg_stat_statements"
    assert len(figures) >= 20 and sum(len(t) for t in figures.values()) >= 500, \
        (len(figures), sum(len(t) for t in figures.values()))
    hits = [(check, name, text) for check, texts in figures.items() for name, secret in in_play.items()
            for text in texts if secret in text or secret[:PREFIX] in text]
    print(f"\nfigures walked: {len(figures)}, texts checked: {sum(len(t) for t in figures.values())}, "
          f"secrets tried: {len(in_play)} ({', '.join(in_play)}), hits: {len(hits)}")
    assert hits == []


def test_the_slow_statements_figure_really_had_the_password_sql_masked(walked):
    figures, _ = walked
    labels = figures["db.queries.slow (its PASSWORD statements)"]
    masked = [t for t in labels if re.search(rf"CREATE ROLE .*PASSWORD '{re.escape(secrets.REDACTED)}'", t)]
    assert len(masked) >= 2, labels  # rms_app's and rmsops_monitor's


def test_every_kind_of_text_in_a_figure_is_redacted_cleaned_and_not_mathtext(monkeypatch):
    """Title, legend, annotation, axis label, figure text and categorical tick labels (made at
    draw time) with a registered secret, a control sequence and ``$x$``: masked, cleaned, literal.
    A log axis keeps matplotlib's own mathtext tick labels."""
    monkeypatch.setattr(secrets, "_known", set())
    secret = "figure-secret-3e9a71c2"
    secrets.register(secret)
    hostile = f"cost $x$ {secret} \x1b[2J"
    fig = Figure(figsize=(6, 3))
    ax, log = fig.subplots(1, 2)
    ax.barh([hostile, "SELECT 1 /* PASSWORD 'sql-literal' */", "plain $5 and $6"], [1, 2, 3], label=hostile)
    ax.set_title(hostile)
    ax.set_xlabel(hostile)
    ax.annotate(hostile, (1, 0))
    ax.legend()
    fig.text(0.5, 0.01, hostile)
    log.plot([1, 10, 1000], [1, 2, 3])
    log.set_xscale("log")

    plots.svg(fig)
    svg = plots.svg(fig).decode()  # a second rendering does not escape twice

    drawn = [(t.get_text(), *t._preprocess_math(t.get_text())) for t in fig.findobj(Text)
             if t.get_text() and t.get_visible()]
    shown = [text for _, text, _ in drawn]
    assert not [s for s in shown if secret in s or "sql-literal" in s or "\x1b" in s]
    assert secret not in svg and "sql-literal" not in svg and "\x1b" not in svg
    assert svg.count(f"cost $x$ {secrets.REDACTED} \N{REPLACEMENT CHARACTER}[2J") == 6, "drawn as text, once each"
    expected = f"cost $x$ {secrets.REDACTED} \N{REPLACEMENT CHARACTER}[2J"
    # title, x label, annotation, legend entry, figure text and the tick label: drawn literally
    assert sum(1 for raw, text, math in drawn if text == expected and not math) == 6, drawn
    assert "plain $5 and $6" in shown
    assert f"SELECT 1 /* PASSWORD '{secrets.REDACTED}' */" in shown
    assert [text for text, _, math in drawn if math and "10^" in text], "log ticks stay mathtext"
