"""The Grafana dashboard under docker/grafana: provisioning files, and every panel's SQL run
against a real PostgreSQL filled through the project's own Store, its numbers checked against
the same computation in pandas (the definitions of the monitor step's monitor.html)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from nextday.data.store import Store

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "docker" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "nextday-monitor.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "nextday.yaml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "nextday.yaml"
MONITOR = ROOT / "conf" / "monitor" / "default.yaml"
COMPOSE = ROOT / "docker" / "compose.yaml"

# where docker/compose.yaml mounts the folders of docker/grafana in the Grafana container
MOUNTS = {
    "./grafana/provisioning": "/etc/grafana/provisioning",
    "./grafana/dashboards": "/var/lib/grafana/dashboards",
}
PLUGIN = "grafana-postgresql-datasource"
WINDOW = 7  # monitor.window_days
COVERAGE_WINDOW = 20  # monitor.coverage_days

# the store's content: three versions logged over the same 30 business days
DATES = pd.bdate_range("2024-03-01", periods=30)
SYMBOLS = [f"S{i:02d}" for i in range(10)]
VERSIONS = [("nextday-earnings", "1"), ("nextday-normal", "1"), ("nextday-normal", "2")]
FEATURES = ["prediction", "ret_1", "rsi_14", "vol_20"]
# the dashboard's time range: starts inside the 9th date (so the rolling panels must look
# before it), ends after the last one (whose actuals are not known yet); Grafana sends UTC
START = DATES[8] + pd.Timedelta(hours=10, minutes=30)
END = DATES[-1] + pd.Timedelta(hours=23)


# ---------------------------------------------------------------------------- rendering
def _stamp(moment: pd.Timestamp) -> str:
    return f"'{moment.strftime('%Y-%m-%dT%H:%M:%SZ')}'"


def render(sql: str, start: pd.Timestamp, end: pd.Timestamp, model: str, version: str) -> str:
    """The SQL Grafana's PostgreSQL datasource sends: macros and variables replaced.

    $__timeFilter(expr) -> expr BETWEEN '<start>' AND '<end>' (RFC 3339, UTC), $__timeFrom()
    and $__timeTo() -> the quoted instants, $model/${model} and $version/${version} -> the
    selected values. Any other `$` left over is an error, so a new macro needs a rule here.
    """
    sql = re.sub(
        r"\$__timeFilter\(([^()]*)\)",
        lambda m: f"{m.group(1).strip()} BETWEEN {_stamp(start)} AND {_stamp(end)}",
        sql,
    )
    sql = sql.replace("$__timeFrom()", _stamp(start)).replace("$__timeTo()", _stamp(end))
    values = {"model": model, "version": version}
    for value in values.values():
        assert "'" not in value, value

    def variable(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise ValueError(f"render() does not know ${name}: add it")
        return values[name]

    sql = re.sub(r"\$\{(\w+)\}|\$(\w+)", variable, sql)
    assert "$" not in sql, sql
    return sql


def test_render_replaces_macros_and_variables():
    sql = (
        "SELECT 1 FROM t WHERE m = '$model' AND v = '${version}' AND $__timeFilter(ts) "
        "AND ts <= $__timeTo() AND ts >= $__timeFrom()"
    )
    start, end = pd.Timestamp("2024-03-01 10:00"), pd.Timestamp("2024-03-31")
    assert render(sql, start, end, "nextday-normal", "2") == (
        "SELECT 1 FROM t WHERE m = 'nextday-normal' AND v = '2' AND ts BETWEEN "
        "'2024-03-01T10:00:00Z' AND '2024-03-31T00:00:00Z' AND ts <= '2024-03-31T00:00:00Z' "
        "AND ts >= '2024-03-01T10:00:00Z'"
    )
    with pytest.raises(ValueError, match=r"\$symbol"):
        render("SELECT '$symbol'", start, end, "m", "v")


# ---------------------------------------------------------------------------- the dashboard
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict]:
    return [p for p in dashboard()["panels"] if p.get("type") != "row"]


def target_sql(title: str) -> tuple[str, str]:
    (panel,) = [p for p in panels() if p["title"] == title]
    return panel["targets"][0]["rawSql"], panel["targets"][0]["format"]


def variable_query(name: str) -> str:
    (variable,) = [v for v in dashboard()["templating"]["list"] if v["name"] == name]
    return variable["query"]


def datasource_refs(node, path: str = "") -> list[tuple[str, dict]]:
    """Every `datasource` reference in the dashboard, with where it sits."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource" and isinstance(value, dict):
                found.append((path, value))
            found += datasource_refs(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += datasource_refs(value, f"{path}/{i}")
    return found


def test_dashboard_identity_and_variables():
    board = dashboard()
    assert board["uid"] == "nextday-monitor"
    assert board["title"] == "nextday: live model monitoring"
    assert 36 <= board["schemaVersion"] <= 41
    names = [v["name"] for v in board["templating"]["list"]]
    assert names == ["model", "version"]
    assert variable_query("model") == "SELECT DISTINCT model_name FROM model_predictions ORDER BY 1"
    assert "'$model'" in variable_query("version")


def test_every_panel_has_a_target_and_a_place():
    ids, cells = set(), set()
    for panel in panels():
        assert panel["id"] not in ids, f"panel id {panel['id']} repeats"
        ids.add(panel["id"])
        (target,) = panel["targets"]
        assert target["format"] in {"time_series", "table"}, panel["title"]
        assert target["rawQuery"] is True and target["rawSql"].strip(), panel["title"]
        sql = target["rawSql"]
        if "model_predictions" in sql or "model_drift" in sql:
            assert "'$model'" in sql and "'$version'" in sql, f"{panel['title']}: no selection"
        if target["format"] == "time_series":
            assert re.search(r'AS "time"', sql), f"{panel['title']}: no time column"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine


def test_thresholds_follow_the_monitor_config():
    settings = yaml.safe_load(MONITOR.read_text())
    by_title = {p["title"]: p for p in panels()}

    def steps(title: str) -> list[float]:
        defaults = by_title[title]["fieldConfig"]["defaults"]
        return [s["value"] for s in defaults["thresholds"]["steps"] if s["value"] is not None]

    low, high = settings["coverage_band"]
    assert steps("Coverage of the 80% interval") == [low, high]
    assert settings["psi_limit"] in steps("Drift: PSI per feature (newest monitor run)")
    assert settings["psi_limit"] in steps("Drift: max PSI per monitor run")
    assert settings["window_days"] == WINDOW
    assert settings["coverage_days"] == COVERAGE_WINDOW
    assert f"{WINDOW - 1} PRECEDING" in target_sql("Rolling 7-day MAE")[0]
    assert f"{COVERAGE_WINDOW - 1} PRECEDING" in target_sql("Coverage of the 80% interval")[0]


# ---------------------------------------------------------------------------- provisioning
def test_datasource_provisioning():
    config = yaml.safe_load(DATASOURCES.read_text())
    assert config["apiVersion"] == 1
    (source,) = config["datasources"]
    assert source["type"] == PLUGIN
    assert source["uid"] == "nextday-store"
    assert source["name"] == "nextday store"
    assert source["url"] == "timescaledb:5432"
    assert source["user"] == "nextday"
    assert source["isDefault"] is True
    assert source["jsonData"]["database"] == "nextday"
    assert source["jsonData"]["sslmode"] == "disable"
    assert source["jsonData"]["timescaledb"] is True
    assert source["jsonData"]["postgresVersion"] == 1500
    assert "password" not in source and "password" not in source["jsonData"]
    assert re.fullmatch(r"\$\{?NEXTDAY_PG_PASSWORD\}?", source["secureJsonData"]["password"])


def test_every_panel_uses_the_provisioned_datasource():
    (source,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    board = dashboard()
    refs = datasource_refs({"panels": board["panels"], "templating": board["templating"]})
    assert len(refs) >= 2 * len(panels()) + len(board["templating"]["list"])
    for where, ref in refs:
        assert ref == {"type": source["type"], "uid": source["uid"]}, where
    for panel in panels():
        assert [t["datasource"]["uid"] for t in panel["targets"]] == [source["uid"]]


def test_dashboard_provider_loads_the_mounted_folder():
    config = yaml.safe_load(PROVIDERS.read_text())
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == MOUNTS["./grafana/dashboards"]
    # the dashboard is a file in the folder mounted at that path
    assert DASHBOARD.parent == GRAFANA / "dashboards"
    assert DATASOURCES.parent.parent == PROVIDERS.parent.parent == GRAFANA / "provisioning"


def test_compose_mounts_the_grafana_folders():
    if not COMPOSE.exists():
        pytest.skip("docker/compose.yaml is not there yet")
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    grafana = [s for s in services.values() if "grafana" in str(s.get("image", ""))]
    assert len(grafana) == 1, "one Grafana service in docker/compose.yaml"
    mounted = {}
    for volume in grafana[0].get("volumes", []):
        if isinstance(volume, dict):
            mounted[volume.get("source")] = volume.get("target")
        else:
            source, target = volume.split(":")[:2]
            mounted[source] = target
    for source, target in MOUNTS.items():
        assert mounted.get(source) == target or mounted.get(source.removeprefix("./")) == target
    environment = grafana[0].get("environment", {})
    names = environment if isinstance(environment, dict) else [e.split("=")[0] for e in environment]
    assert "NEXTDAY_PG_PASSWORD" in names, "Grafana needs NEXTDAY_PG_PASSWORD for the datasource"


SECRET_KEY = re.compile(r"pass(word|wd)?|secret|token|api_?key", re.IGNORECASE)
ENV_REFERENCE = re.compile(r"\$\{?[A-Z_][A-Z0-9_]*\}?")


def secrets(node, path: str = "") -> list[str]:
    """Keys that look like secrets and carry a value other than an ${ENV} reference."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}/{key}"
            if (
                SECRET_KEY.search(str(key))
                and not isinstance(value, dict | list)
                and value not in (None, "")
                and not ENV_REFERENCE.fullmatch(str(value))
            ):
                found.append(where)
            found += secrets(value, where)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += secrets(value, f"{path}/{i}")
    return found


def test_no_literal_password_under_docker_grafana():
    files = sorted(p for p in GRAFANA.rglob("*") if p.is_file())
    assert {DASHBOARD, DATASOURCES, PROVIDERS} <= set(files)
    for path in files:
        text = path.read_text()
        parsed = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        assert not secrets(parsed), f"{path.relative_to(ROOT)}: {secrets(parsed)}"
        for line in text.splitlines():
            match = re.search(r"(?i)password\W*[:=]\s*(\S+)", line)
            if match:
                assert ENV_REFERENCE.fullmatch(match.group(1).strip("'\"")), f"{path}: {line}"


# ---------------------------------------------------------------------------- the store
def logged_predictions() -> pd.DataFrame:
    """What the prediction logger and the monitor step leave in model_predictions: seeded
    values per version, the newest two dates without actuals (not known yet)."""
    rng = np.random.default_rng(7)
    frames = []
    for i, (name, version) in enumerate(VERSIONS):
        n = len(DATES) * len(SYMBOLS)
        predicted = rng.normal(0.0, 0.01, n)
        sigma = rng.uniform(0.01, 0.03, n) * (1 + i)
        actual = predicted + rng.standard_t(4, n) * 0.012 * (1 + 0.5 * i)
        # the second version serves an online calibration: its interval scaled by m
        multiplier = rng.uniform(0.7, 1.6, n) if i == 1 else np.full(n, np.nan)
        half = 1.2816 * sigma * np.nan_to_num(multiplier, nan=1.0)
        frame = pd.DataFrame(
            {
                "symbol": np.tile(SYMBOLS, len(DATES)),
                "ts": np.repeat(DATES, len(SYMBOLS)),
                "model_name": name,
                "model_version": version,
                "predicted": predicted,
                "sigma": sigma,
                "p10": predicted - half,
                "p50": predicted,
                "p90": predicted + half,
                "actual": actual,
                "latency_ms": rng.lognormal(1.0 + 0.3 * i, 0.5, n),
                "online_multiplier": multiplier,
            }
        )
        frame.loc[frame["ts"] >= DATES[-2], "actual"] = np.nan
        frame["error"] = frame["predicted"] - frame["actual"]
        frame["created_at"] = frame["ts"] + pd.Timedelta(hours=17)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def monitor_runs() -> pd.DataFrame:
    """What the monitor step writes into model_drift: one row per run and feature."""
    rng = np.random.default_rng(11)
    rows = []
    for name, version in VERSIONS:
        # one run before the dashboard's range, two inside it; each version at its own time,
        # the earlier versions later (so a query that ignores the version gets another run)
        offset = -pd.Timedelta(minutes=len(rows))
        for day in (DATES[3], DATES[15], DATES[-3]):
            for feature in FEATURES:
                rows.append(
                    {
                        "run_ts": day + pd.Timedelta(hours=18) + offset,
                        "model_name": name,
                        "model_version": version,
                        "feature": feature,
                        "psi": float(rng.gamma(1.0, 0.1)),
                        "ks_stat": float(rng.uniform(0, 0.3)),
                        "ks_p": float(rng.uniform(0, 1)),
                        "rows": 200,
                    }
                )
    return pd.DataFrame(rows)


@pytest.fixture
def store(pg_url) -> Store:
    store = Store(pg_url)
    store.create()
    store.upsert("model_predictions", logged_predictions())
    store.upsert("model_drift", monitor_runs())
    return store


@pytest.mark.postgres
def test_store_writes_model_drift_on_postgres(pg_url):
    """model_drift has an integer column: PostgreSQL's binary COPY must send it as int4."""
    store = Store(pg_url)
    store.create()
    assert store.upsert("model_drift", monitor_runs()) == len(monitor_runs())
    assert store.upsert("model_drift", monitor_runs()) == len(monitor_runs())  # idempotent
    assert store.count("model_drift") == len(monitor_runs())
    assert store.read("model_drift")["rows"].eq(200).all()


def query(store: Store, sql: str) -> pd.DataFrame:
    with store.engine.connect() as connection:
        return pd.read_sql_query(sa.text(sql), connection)


def selected(frame: pd.DataFrame, model: str, version: str) -> pd.DataFrame:
    return frame[(frame["model_name"] == model) & (frame["model_version"] == version)]


def in_range(frame: pd.DataFrame, column: str = "ts") -> pd.DataFrame:
    """Grafana's BETWEEN on a DATE column compares dates: the start's and end's days count."""
    if column == "ts":
        keep = frame[column].between(START.normalize(), END.normalize())
    else:
        keep = frame[column].between(START, END)
    return frame[keep]


def daily(rows: pd.DataFrame) -> pd.DataFrame:
    """Per date with actuals: MAE, coverage and their rolling means, as the monitor step's
    monitor.html computes them (over the version's whole history, then cut to the range)."""
    known = rows.dropna(subset=["actual"]).assign(
        abs_error=lambda f: f["error"].abs(),
        inside=lambda f: ((f["p10"] <= f["actual"]) & (f["actual"] <= f["p90"])).astype(float),
    )
    m = known["online_multiplier"].fillna(1.0)
    static_low = known["p50"] - (known["p50"] - known["p10"]) / m
    static_high = known["p50"] + (known["p90"] - known["p50"]) / m
    known["static"] = ((static_low <= known["actual"]) & (known["actual"] <= static_high)) * 1.0
    grouped = known.groupby("ts")
    out = pd.DataFrame({"mae": grouped["abs_error"].mean(), "coverage": grouped["inside"].mean()})
    out["rolling_mae"] = out["mae"].rolling(WINDOW, min_periods=1).mean()
    out["rolling_coverage"] = out["coverage"].rolling(COVERAGE_WINDOW, min_periods=1).mean()
    rolling_static = grouped["static"].mean().rolling(COVERAGE_WINDOW, min_periods=1).mean()
    out["static_rolling_coverage"] = rolling_static
    return in_range(out.reset_index())


def close(actual, expected) -> None:
    actual, expected = np.asarray(actual, float), np.asarray(expected, float)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert np.allclose(actual, expected, rtol=1e-9, atol=1e-12, equal_nan=True)


def days(result: pd.DataFrame) -> list[pd.Timestamp]:
    return list(pd.to_datetime(result["time"]))


# One expectation per panel title: the columns its query returns, and a check of the rows
# against pandas. Args: the query's result, the selection's predictions and drift rows.
Check = Callable[[pd.DataFrame, pd.DataFrame, pd.DataFrame], None]


def check_rolling_mae(result, rows, drift_rows):
    expected = daily(rows)
    assert days(result) == list(expected["ts"])  # one row per date with actuals in the range
    assert len(result) == len(DATES) - 8 - 2
    close(result["daily_mae"], expected["mae"])
    close(result["rolling_mae_7d"], expected["rolling_mae"])
    # the first date of the range averages 7 dates, 6 of them before the range
    first = rows[rows["ts"].between(DATES[2], DATES[8])]
    close(result["rolling_mae_7d"].iloc[0], first["error"].abs().groupby(first["ts"]).mean().mean())


def check_per_day(result, rows, drift_rows):
    expected = in_range(rows).groupby("ts")
    assert days(result) == list(expected.size().index)
    close(result["predictions"], expected.size())
    close(result["with_actual"], expected["actual"].count())
    assert result["with_actual"].iloc[-1] == 0 and result["predictions"].iloc[-1] == len(SYMBOLS)


def check_scatter(result, rows, drift_rows):
    expected = in_range(rows).dropna(subset=["actual"])
    assert 0 < len(result) == min(5000, len(expected))
    got = result.sort_values(["predicted", "actual"]).to_numpy()
    close(got, expected[["predicted", "actual"]].sort_values(["predicted", "actual"]).to_numpy())


def check_histogram(result, rows, drift_rows):
    errors = in_range(rows)["error"].dropna().to_numpy()
    counts, edges = np.histogram(errors, bins=40)
    assert len(result) == 40
    close(result["xMin"], edges[:-1])
    close(result["xMax"], edges[1:])
    assert result["count"].tolist() == counts.tolist()
    assert result["count"].sum() == len(errors)


def check_latency(result, rows, drift_rows):
    grouped = in_range(rows).groupby("ts")["latency_ms"]
    assert days(result) == list(grouped.size().index)  # every date with predictions
    close(result["latency_p50_ms"], grouped.quantile(0.5))
    close(result["latency_p50_ms"], grouped.median())
    close(result["latency_p95_ms"], grouped.quantile(0.95))


def check_coverage(result, rows, drift_rows):
    expected = daily(rows)
    assert days(result) == list(expected["ts"])
    close(result["coverage_80"], expected["coverage"])
    close(result["rolling_coverage_20d"], expected["rolling_coverage"])
    close(result["static_rolling_coverage_20d"], expected["static_rolling_coverage"])
    assert result[["coverage_80", "rolling_coverage_20d"]].stack().between(0, 1).all()


def check_multiplier(result, rows, drift_rows):
    expected = in_range(rows).groupby("ts")["online_multiplier"]
    assert days(result) == list(expected.size().index)
    close(result["multiplier"], expected.apply(lambda m: m.fillna(1.0).mean()))


def check_drift_newest(result, rows, drift_rows):
    newest = drift_rows[drift_rows["run_ts"] == drift_rows["run_ts"].max()]
    expected = newest.sort_values(["psi", "feature"], ascending=[False, True])
    assert result["feature"].tolist() == expected["feature"].tolist()
    assert sorted(result["feature"]) == sorted(FEATURES)
    assert result["psi"].is_monotonic_decreasing
    for column in ("psi", "ks_stat", "ks_p", "rows"):
        close(result[column], expected[column])


def check_drift_runs(result, rows, drift_rows):
    runs = in_range(drift_rows, "run_ts").groupby("run_ts")
    assert len(result) == 2  # the run before the range is left out
    assert days(result) == list(runs.size().index)
    close(result["max_psi"], runs["psi"].max())
    prediction = drift_rows[drift_rows["feature"] == "prediction"].set_index("run_ts")["psi"]
    close(result["prediction_psi"], prediction.reindex(runs.size().index))


EXPECTED: dict[str, tuple[list[str], Check]] = {
    "Rolling 7-day MAE": (["time", "daily_mae", "rolling_mae_7d"], check_rolling_mae),
    "Predictions per day": (["time", "predictions", "with_actual"], check_per_day),
    "Prediction vs actual": (["predicted", "actual"], check_scatter),
    "Error histogram": (["xMin", "xMax", "count"], check_histogram),
    "Inference latency": (["time", "latency_p50_ms", "latency_p95_ms"], check_latency),
    "Coverage of the 80% interval": (
        ["time", "coverage_80", "rolling_coverage_20d", "static_rolling_coverage_20d"],
        check_coverage,
    ),
    "Online calibration: width multiplier served": (["time", "multiplier"], check_multiplier),
    "Drift: PSI per feature (newest monitor run)": (
        ["feature", "psi", "ks_stat", "ks_p", "rows"],
        check_drift_newest,
    ),
    "Drift: max PSI per monitor run": (["time", "max_psi", "prediction_psi"], check_drift_runs),
}


def test_every_panel_has_an_expectation():
    titles = [p["title"] for p in panels()]
    assert len(titles) == len(set(titles)), "panel titles repeat"
    assert set(titles) == set(EXPECTED), (
        f"panels without a test: {set(titles) - set(EXPECTED)}; "
        f"tests without a panel: {set(EXPECTED) - set(titles)}"
    )


@pytest.mark.postgres
def test_variables_list_the_logged_models_and_versions(store):
    models = query(store, render(variable_query("model"), START, END, "", ""))
    assert models.iloc[:, 0].tolist() == ["nextday-earnings", "nextday-normal"]
    for model, versions in (("nextday-normal", ["2", "1"]), ("nextday-earnings", ["1"])):
        found = query(store, render(variable_query("version"), START, END, model, ""))
        assert found.iloc[:, 0].tolist() == versions  # the newest version first


@pytest.mark.postgres
@pytest.mark.parametrize("title", list(EXPECTED))
def test_panel_query_on_postgres(store, title):
    sql, fmt = target_sql(title)
    columns, check = EXPECTED[title]
    predictions, runs = logged_predictions(), monitor_runs()
    for model, version in (("nextday-normal", "2"), ("nextday-earnings", "1")):
        result = query(store, render(sql, START, END, model, version))
        assert list(result.columns) == columns, title
        assert len(result) > 0, title
        if fmt == "time_series":
            assert result["time"].is_monotonic_increasing, title
        check(result, selected(predictions, model, version), selected(runs, model, version))


@pytest.mark.postgres
def test_panels_are_empty_without_predictions(pg_url):
    """A fresh store (or a version never logged) gives empty panels, not SQL errors."""
    store = Store(pg_url)
    store.create()
    for title, (columns, _) in EXPECTED.items():
        result = query(store, render(target_sql(title)[0], START, END, "nextday-normal", "9"))
        assert list(result.columns) == columns and result.empty, title
