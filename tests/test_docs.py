"""The docs agree with the code: the model card template, feature lists, entry points, step
names, export files and links. Fast: reads files, imports no TensorFlow and starts no run."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from nextday.contracts.outputs import OUTPUTS
from nextday.export import card
from nextday.export.files import file_names
from nextday.features import FEATURE_GROUPS
from nextday.inference.checks import input_columns
from nextday.steps import catalog

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
ARCHITECTURE = DOCS / "architecture.md"
MODEL_CARD = DOCS / "model_card.md"
PAGES = [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, content) of each fenced code block; the content ends with a newline."""
    blocks: list[tuple[str, str]] = []
    language: str | None = None
    lines: list[str] = []
    for line in text.splitlines(keepends=True):
        if language is None:
            if line.startswith("```"):
                language, lines = (line[3:].split() or [""])[0], []
        elif line.rstrip("\n") == "```":
            blocks.append((language, "".join(lines)))
            language = None
        else:
            lines.append(line)
    assert language is None, "a fenced code block is not closed"
    return blocks


def prose(text: str) -> str:
    """The text outside fenced code blocks, with inline code spans removed."""
    kept, inside = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            inside = not inside
        elif not inside:
            kept.append(line)
    return re.sub(r"`[^`\n]*`", "", "\n".join(kept))


def blocks_of(path: Path, language: str) -> list[str]:
    return [content for lang, content in code_blocks(path.read_text()) if lang == language]


def between(text: str, name: str) -> str:
    """The part of `text` between <!-- name:start ... --> and <!-- name:end -->."""
    found = re.search(rf"<!-- {name}:start.*?-->(.*?)<!-- {name}:end -->", text, re.S)
    assert found, f"markers <!-- {name}:start --> ... <!-- {name}:end --> not found"
    return found.group(1)


def mlproject_entry_points() -> set[str]:
    return set(yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"])


def cli_steps() -> set[str]:
    """The steps `python -m nextday` knows (the catalog), and `show`."""
    return {step.name for step in catalog.STEPS} | {catalog.SHOW.name}


def test_mlproject_has_one_entry_point_per_step():
    assert mlproject_entry_points() == {step.name for step in catalog.STEPS}


def model_columns(model: str) -> list[str]:
    """The feature columns of `model`, from its config's feature groups."""
    groups = yaml.safe_load((ROOT / "conf" / "model" / f"{model}.yaml").read_text())
    return [name for group in groups["feature_groups"] for name in FEATURE_GROUPS[group]]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in prose(path.read_text()).splitlines():
        heading = re.match(r"#{1,6}\s+(.*)", line)
        if heading:
            base = slug(heading.group(1))
            out.add(base if base not in seen else f"{base}-{seen[base]}")
            seen[base] = seen.get(base, 0) + 1
    return out


def test_model_card_template_block_is_the_code_template():
    blocks = blocks_of(MODEL_CARD, "text")
    assert len(blocks) == 1, "docs/model_card.md should hold one ```text block: the template"
    assert blocks[0] == card.TEMPLATE


def test_model_card_example_is_what_card_render_prints():
    (example,) = blocks_of(MODEL_CARD, "python")
    (shown,) = blocks_of(MODEL_CARD, "markdown")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(example, str(MODEL_CARD), "exec"), {})
    assert printed.getvalue() == shown + "\n"


def test_feature_table_lists_every_feature_in_order():
    rows = re.findall(
        r"^\| (\d+) \| `(\w+)` \| (\w+) \|",
        between(ARCHITECTURE.read_text(), "feature-table"),
        re.M,
    )
    expected = [(g, name) for g in ("technical", "earnings") for name in FEATURE_GROUPS[g]]
    assert [int(n) for n, _, _ in rows] == list(range(1, len(expected) + 1))
    assert [(group, name) for _, name, group in rows] == expected


@pytest.mark.parametrize("model", ["normal", "earnings"])
def test_column_lists_are_each_models_inputs(model):
    text = ARCHITECTURE.read_text()
    found = re.search(rf"<!-- columns:{model} -->\s*```text\n(.*?)```", text, re.S)
    assert found, f"no <!-- columns:{model} --> block in docs/architecture.md"
    assert re.findall(r"\w+", found.group(1)) == model_columns(model)
    assert len(model_columns(model)) == {"normal": 20, "earnings": 37}[model]


def test_lstm_columns_as_documented():
    window = yaml.safe_load((ROOT / "conf" / "arch" / "lstm.yaml").read_text())["window"]
    text = ARCHITECTURE.read_text()
    counts = re.search(
        r"\((\d+) columns for `normal`, (\d+) for `earnings` at window (\d+)\)", text
    )
    assert counts and int(counts.group(3)) == window
    normal, earnings = (input_columns(model_columns(m), window) for m in ("normal", "earnings"))
    assert (int(counts.group(1)), int(counts.group(2))) == (len(normal), len(earnings))
    shown = re.search(r"`(ret_1d_lag\d+), (ret_5d_lag\d+), \.\.\., .*?(\w+_lag0)`", text)
    assert shown and [shown.group(1), shown.group(2), shown.group(3)] == [*normal[:2], normal[-1]]


def test_outputs_and_export_files_as_documented():
    text = ARCHITECTURE.read_text()
    documented = re.findall(r"^\| `(\w+)` \|", between(text, "outputs"), re.M)
    assert documented == list(OUTPUTS)
    files = between(text, "export-files")
    names = file_names(SimpleNamespace(arch="{arch}", name="{model}"), "{version}")
    for role, name in names.items():
        assert f"| `{name}` | `{role}` |" in files, f"{role}: {name} is not in the files table"


def test_documented_entry_points_exist_in_mlproject():
    listed = re.findall(
        r"^\| `([\w-]+)` \|", between(ARCHITECTURE.read_text(), "entry-points"), re.M
    )
    assert listed, "no entry point found in docs/architecture.md"
    assert set(listed) <= mlproject_entry_points()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_commands_name_known_steps_and_entry_points(page):
    text = page.read_text()
    steps = set(re.findall(r"python -m nextday ([A-Za-z_][\w-]*)", text))
    assert steps <= cli_steps(), f"{page.name}: unknown steps {steps - cli_steps()}"
    entry_points = set(re.findall(r"mlflow run \S+ -e ([\w-]+)", text))
    unknown = entry_points - mlproject_entry_points()
    assert not unknown, f"{page.name}: unknown entry points {unknown}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_point_to_existing_files(page):
    broken = []
    for target in LINK.findall(prose(page.read_text())):
        if SCHEME.match(target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or (anchor and file.suffix == ".md" and anchor not in anchors(file)):
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"
