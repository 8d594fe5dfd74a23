"""The pages people look at, opened in headless Chromium: backtest.html and monitor.html of a
quick run (whole, listed in their contents, quiet in the console, readable on a phone), the
MLflow UI on the run's store and optuna-dashboard on its study. Each page's screenshot is
saved under the test's tmp_path; the reports' are logged to their runs beside the page."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import pytest
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

import browser
from conftest import quick_root
from nextday.contracts import tags

pytestmark = [pytest.mark.browser, pytest.mark.slow(seconds=180)]

BIN = Path(sys.executable).parent  # the environment's mlflow and optuna-dashboard


@dataclass(frozen=True)
class Quick:
    """A quick run's folder and its runs: main's steps (`train.normal`, ...), main itself, a
    short live period, the monitor run that judged it, and a two-trial tune."""

    root: Path
    runs: dict[str, str]

    @property
    def client(self) -> mlflow.MlflowClient:
        return mlflow.MlflowClient(f"sqlite:///{self.root}/mlflow.db")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    from nextday.steps.live import run_live
    from nextday.steps.main import run_main
    from nextday.steps.monitor import run_monitor
    from nextday.steps.tune import run_tune

    browser.require_browser()  # before the pipeline: nothing to look at without a browser
    root = tmp_path_factory.mktemp("browser")
    with quick_root(root) as cfg:
        runs = run_main(cfg(), ["experiment=quick"])
        runs["live"] = run_live(cfg("live.days=25"))
        runs["monitor"] = run_monitor(cfg())
        runs["tune"] = run_tune(cfg("tune.n_trials=2", "tune.retrain_best=false"))
        quick = Quick(root, runs)
        runs["main"] = quick.client.get_run(runs["prepare"]).data.tags[MLFLOW_PARENT_RUN_ID]
        yield quick


@pytest.fixture
def desktop():
    with browser.chrome() as driver:
        yield driver


@pytest.fixture
def phone():
    with browser.chrome(phone=True) as driver:
        yield driver


def _page(quick: Quick, run: str, path: str) -> Path:
    """The stored file of artifact `path` of `quick.runs[run]` (the store is local)."""
    info = quick.client.get_run(quick.runs[run]).info
    page = Path(urlparse(info.artifact_uri).path) / path
    assert page.is_file(), page
    return page


REPORTS = {  # the run of each HTML report, and the page
    "backtest normal": ("backtest.normal", "backtest/backtest.html"),
    "backtest earnings": ("backtest.earnings", "backtest/backtest.html"),
    "monitor": ("monitor", "monitor/monitor.html"),
}

PAGE_FACTS = """
const images = [...document.images].map(i => ({
    alt: i.alt, loaded: i.complete && i.naturalWidth > 0, width: i.naturalWidth}));
const links = [...document.querySelectorAll('nav.contents a')].map(a => {
    const id = decodeURIComponent(a.getAttribute('href').slice(1));
    const heading = document.getElementById(id)?.querySelector(':scope > h2');
    return {text: a.textContent, id: id, heading: heading ? heading.textContent : null};
});
const headings = [...document.querySelectorAll('h2')].map(h => h.textContent);
return {images, links, headings};
"""


@pytest.mark.parametrize("report", list(REPORTS))
def test_a_report_page_loads_whole_with_its_contents_and_no_console_error(
    quick, desktop, report, tmp_path
):
    run, path = REPORTS[report]
    desktop.get(_page(quick, run, path).as_uri())
    browser.settle(
        lambda: desktop.execute_script("return document.readyState"), lambda s: s == "complete"
    )
    facts = desktop.execute_script(PAGE_FACTS)
    images, links = facts["images"], facts["links"]
    assert images and all(image["loaded"] for image in images), images
    assert links, "no contents at the top of the page"
    for link in links:  # each entry leads to its section
        assert link["heading"] == link["text"], link
    assert sorted(link["text"] for link in links) == sorted(facts["headings"])  # and each once
    last = links[-1]
    desktop.find_element("css selector", f"nav.contents a[href='#{last['id']}']").click()
    shown = desktop.execute_script(
        "const r = document.getElementById(arguments[0]).getBoundingClientRect();"
        "return {hash: location.hash, top: r.top, scrolled: window.scrollY, height: innerHeight};",
        last["id"],
    )
    assert shown["hash"] == f"#{last['id']}" and shown["scrolled"] > 0
    assert -1 < shown["top"] < shown["height"], shown  # the section is on the screen (sub-pixel)
    assert browser.console_errors(desktop) == []

    desktop.execute_script("window.scrollTo(0, 0)")
    name = Path(path).stem
    screenshot = browser.full_page_screenshot(desktop, tmp_path / f"{name}.png")
    client = quick.client
    client.log_artifact(quick.runs[run], str(screenshot), str(Path(path).parent))
    logged = {f.path for f in client.list_artifacts(quick.runs[run], str(Path(path).parent))}
    assert f"{Path(path).parent}/{name}.png" in logged
    print(f"{report}: {len(images)} images, {len(links)} sections, {screenshot}")


PHONE_FACTS = """
const texts = [...document.querySelectorAll('h1, h2, p, li, td, th')]
    .filter(e => e.getClientRects().length && e.textContent.trim());
const blocks = [...document.querySelectorAll('body > *, section > *')];
return {
    width: window.innerWidth,
    scale: window.visualViewport.scale,
    scrollWidth: document.documentElement.scrollWidth,
    smallestFont: Math.min(...texts.map(e => parseFloat(getComputedStyle(e).fontSize))),
    rightmost: Math.max(...blocks.map(e => e.getBoundingClientRect().right)),
    tables: [...document.querySelectorAll('div.table')].map(
        d => ({box: d.getBoundingClientRect().right, inside: d.scrollWidth, shown: d.clientWidth})),
};
"""


@pytest.mark.parametrize("report", list(REPORTS))
def test_a_report_page_reads_on_a_phone(quick, phone, report, tmp_path):
    run, path = REPORTS[report]
    phone.get(_page(quick, run, path).as_uri())
    facts = phone.execute_script(PHONE_FACTS)
    # laid out at the phone's width (not 980 px shrunk to fit), at its natural size
    assert facts["width"] == browser.PHONE["width"] and facts["scale"] == 1, facts
    assert facts["scrollWidth"] <= facts["width"], facts  # no sideways scrolling
    assert facts["rightmost"] <= facts["width"], facts
    assert facts["smallestFont"] >= 12, facts
    tables = facts["tables"]
    assert all(table["box"] <= facts["width"] for table in tables), tables
    # the wide tables scroll inside their own box
    assert any(table["inside"] > table["shown"] for table in tables), tables
    screenshot = browser.full_page_screenshot(phone, tmp_path / f"{Path(path).stem}-phone.png")
    wide = sum(table["inside"] > table["shown"] for table in tables)
    print(f"{report} on a phone: {len(tables)} tables, {wide} scroll in their box, {screenshot}")


@pytest.fixture(scope="module")
def mlflow_ui(quick, tmp_path_factory):
    """`mlflow server` (the UI and its API) on the quick run's store."""
    port = browser.free_port()
    command = [
        str(BIN / "mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{quick.root}/mlflow.db",
        "--default-artifact-root", str(quick.root / "mlartifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    log = tmp_path_factory.mktemp("mlflow-ui") / "server.log"
    with browser.server(command, port, log, ready="/health") as url:
        yield url


def _experiment(quick: Quick) -> str:
    return quick.client.get_experiment_by_name("nextday").experiment_id


def _wait(driver, css: str, clickable: bool = False):
    from selenium.webdriver.support import expected_conditions as until
    from selenium.webdriver.support.ui import WebDriverWait

    found = until.element_to_be_clickable if clickable else until.visibility_of_element_located
    return WebDriverWait(driver, 60).until(found(("css selector", css)))


def _close_assistant(driver) -> None:
    """The MLflow UI opens its assistant beside the page; closed, the tables get the room."""
    for button in driver.find_elements("css selector", "button[aria-label='Close']"):
        if button.is_displayed():
            button.click()


STEP_COLUMN = f"tags.`{tags.STEP}`"
STEP_CELLS = """
const cells = {};
document.querySelectorAll('[role=row][row-id] [col-id="' + arguments[0] + '"]').forEach(
    c => { cells[c.closest('[row-id]').getAttribute('row-id')] = c.textContent.trim(); });
return cells;
"""


def test_mlflow_ui_lists_every_step_run_with_its_step_tag(quick, mlflow_ui, desktop, tmp_path):
    from selenium.webdriver.common.keys import Keys

    desktop.set_window_size(1920, 1080)
    desktop.get(f"{mlflow_ui}/#/experiments/{_experiment(quick)}/runs")
    main = quick.runs["main"]
    _wait(desktop, f"[role=row][row-id='{main}']")  # the runs have loaded: their tags too
    _close_assistant(desktop)
    # the step tag as a column of the runs table, chosen as a person would
    _wait(desktop, "[data-testid=column-selection-dropdown]", clickable=True).click()
    search = _wait(desktop, "[role=dialog] input[placeholder='Search columns']")
    search.send_keys(tags.STEP)
    _wait(desktop, f"[role=dialog] [title='{tags.STEP}']", clickable=True).click()
    search.send_keys(Keys.ESCAPE)
    # main's steps are its child runs, folded under it until opened
    _wait(
        desktop, f"[role=row][row-id='{main}'] button[data-component-id*=runnamecell]", True
    ).click()
    expected = {run_id: name.split(".")[0] for name, run_id in quick.runs.items()}
    shown = browser.settle(
        lambda: desktop.execute_script(STEP_CELLS, STEP_COLUMN), lambda cells: cells == expected
    )
    assert shown == expected
    browser.full_page_screenshot(desktop, tmp_path / "mlflow-runs.png")


METRIC_ROWS = """
const rows = {};
document.querySelectorAll('[role=table] [role=row]').forEach(row => {
    const cells = row.querySelectorAll('[role=cell]');
    if (cells.length >= 2) rows[cells[0].textContent.trim()] = cells[1].textContent.trim();
});
return rows;
"""


def test_mlflow_ui_shows_a_train_runs_step_and_its_baselines(quick, mlflow_ui, desktop, tmp_path):
    desktop.set_window_size(1920, 1080)
    train = quick.client.get_run(quick.runs["train.normal"])
    baselines = {k: v for k, v in train.data.metrics.items() if k.startswith("baseline_")}
    assert {"baseline_zero_test_mae", "baseline_linear_test_mae"} <= set(baselines)
    desktop.get(f"{mlflow_ui}/#/experiments/{_experiment(quick)}/runs/{train.info.run_id}")
    tag = _wait(desktop, f"[title='{tags.STEP}']").find_element("xpath", "..")
    assert "".join(tag.text.split()) == f"{tags.STEP}:train"  # the tag chip: key, value
    _close_assistant(desktop)
    _wait(desktop, "input[placeholder='Search metrics']").send_keys("baseline_")
    shown = browser.settle(
        lambda: desktop.execute_script(METRIC_ROWS),
        lambda rows: set(baselines) <= set(rows) and "val_mae" not in rows,
    )
    assert set(baselines) <= set(shown) and "val_mae" not in shown, sorted(shown)
    for name, value in baselines.items():
        assert float(shown[name]) == pytest.approx(value, rel=1e-12), name
    browser.full_page_screenshot(desktop, tmp_path / "mlflow-train-run.png")


ALIASES = """
const models = {};
document.querySelectorAll('[role=row]').forEach(row => {
    const link = row.querySelector('a[href^="#/models/"]');
    if (!link) return;
    models[link.textContent.trim()] = [...row.querySelectorAll('[data-component-type=tag][title]')]
        .map(tag => tag.getAttribute('title')).sort();
});
return models;
"""


def test_mlflow_ui_registered_models_show_both_models_with_their_aliases(
    quick, mlflow_ui, desktop, tmp_path
):
    expected = {}
    for model in ("normal", "earnings"):
        aliases = quick.client.get_registered_model(f"nextday-{model}").aliases
        assert aliases, f"nextday-{model} has no alias"  # production or challenger
        expected[f"nextday-{model}"] = sorted(aliases)
    desktop.set_window_size(1920, 1080)
    desktop.get(f"{mlflow_ui}/#/models")
    shown = browser.settle(
        lambda: desktop.execute_script(ALIASES),
        lambda models: all(models.get(name) == aliases for name, aliases in expected.items()),
    )
    assert {name: shown.get(name) for name in expected} == expected, shown
    browser.full_page_screenshot(desktop, tmp_path / "mlflow-models.png")


def test_optuna_dashboard_lists_the_study_and_its_trials(quick, desktop, tmp_path):
    import optuna

    study_name = quick.client.get_run(quick.runs["tune"]).data.tags[tags.STUDY]
    storage = f"sqlite:///{quick.root}/optuna.db"
    trials = optuna.load_study(study_name=study_name, storage=storage).trials
    assert len(trials) == 2
    port = browser.free_port()
    command = [str(BIN / "optuna-dashboard"), storage, "--host", "127.0.0.1", "--port", str(port)]
    with browser.server(command, port, tmp_path / "dashboard.log", ready="/api/studies") as url:
        desktop.set_window_size(1600, 1000)
        desktop.get(f"{url}/dashboard")
        study = _wait(desktop, "a[href*='/dashboard/studies/']", clickable=True)
        assert study_name in study.text
        browser.full_page_screenshot(desktop, tmp_path / "optuna-studies.png")
        study.click()
        browser.settle(lambda: desktop.current_url, lambda at: "/studies/" in at)
        desktop.get(desktop.current_url.rstrip("/") + "/trials")
        body = browser.settle(
            lambda: desktop.find_element("tag name", "body").text,
            lambda text: f"{len(trials)} Trials" in text,
        )
        assert f"{len(trials)} Trials" in body, body[:2000]
        for trial in trials:
            assert f"Trial {trial.number}" in body, trial.number
        assert {t.state.name.capitalize() for t in trials} <= set(body.splitlines())
        browser.full_page_screenshot(desktop, tmp_path / "optuna-trials.png")
