"""`vaequiz stats`: hand-computed values on a tiny cohort, and a simulated 2PL cohort whose true
item parameters the estimates must track."""

from __future__ import annotations

import json
import math
import random
import re
import statistics
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from vaequiz.cli.app import app
from vaequiz.grading.models import CheckResult, ItemResult

runner = CliRunner()


def result(student: str, question: str, score: float, kind: str = "short_answer",
           answer: Any = None, max_points: float = 1.0) -> ItemResult:
    return ItemResult(student=student, question=question, kind=kind, passed=score >= 0.5,
                      score=score, points=score * max_points, max_points=max_points, answer=answer)


def write_results(folder: Path, results: list[ItemResult]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "results.jsonl").open("w") as handle:
        for item in results:
            handle.write(item.model_dump_json() + "\n")
    return folder


def stats_json(folder: Path, *extra: str) -> dict[str, Any]:
    done = runner.invoke(app, ["stats", str(folder), "--json", *extra])
    assert done.exit_code == 0, done.stderr
    return json.loads(done.stdout)


TINY = {  # student: (item scores), item "pick" is an MCQ keyed A
    "s1": (1, 1, 1), "s2": (1, 1, 0), "s3": (1, 0, 1), "s4": (0, 1, 0), "s5": (0, 0, 0),
}
TINY_CHOICES = {"s1": "A", "s2": "A", "s3": "A", "s4": "B", "s5": "C"}


def tiny_results() -> list[ItemResult]:
    rows = []
    for student, scores in TINY.items():
        rows.append(result(student, "pick", scores[0], "mcq", TINY_CHOICES[student]))
        rows.append(result(student, "explain", scores[1]))
        rows.append(result(student, "shape-z", scores[2], "shape", "(2, 3)"))
    return rows


def test_tiny_cohort_matches_hand_computed_values(tmp_path: Path) -> None:
    report = stats_json(write_results(tmp_path / "quiz", tiny_results()))
    quiz = report["quiz"]
    # item variances 0.3 each, total variance 1.3: alpha = 3/2 * (1 - 0.9/1.3) = 6/13
    assert math.isclose(quiz["cronbach_alpha"], 6 / 13, rel_tol=1e-9)
    assert quiz["students"] == 5 and quiz["items"] == 3
    assert math.isclose(quiz["mean_percent"], 100 * 8 / 15)
    assert [b["count"] for b in quiz["histogram"]] == [1, 0, 0, 1, 0, 0, 2, 0, 0, 1]
    pick = next(i for i in report["items"] if i["question"] == "pick")
    assert math.isclose(pick["facility"], 0.6)
    # rest scores 2, 1, 1, 1, 0: sxy = 1, sxx = 1.2, syy = 2, so r = 1 / sqrt(2.4)
    assert math.isclose(pick["point_biserial"], 1 / math.sqrt(2.4), rel_tol=1e-9)
    assert math.isclose(pick["point_biserial"], statistics.correlation(
        [1, 1, 1, 0, 0], [2, 1, 1, 1, 0]), rel_tol=1e-9)
    # 27% of 5 rounds to 1 student per group: top (rest 2) scored 1, bottom (rest 0) scored 0
    assert pick["upper_lower"] == 1.0
    shares = {o["label"]: (o["share"], o["is_key"]) for o in pick["options"]}
    assert shares == {"A": (0.6, True), "B": (0.2, False), "C": (0.2, False)}
    assert pick["flags"] == []


def test_option_labels_and_key_come_from_the_bank(tmp_path: Path) -> None:
    bank = tmp_path / "bank"
    bank.mkdir()
    (bank / "q.yaml").write_text(yaml.safe_dump([{
        "id": "pick", "kind": "mcq", "topics": ["kl"], "difficulty": "beginner",
        "source": "original", "stem": "Pick", "answer": "A", "explanation": "A.",
        "options": [{"label": l, "text": f"option {l}"} for l in "ABCD"],
    }]))
    report = stats_json(write_results(tmp_path / "quiz", tiny_results()), "--bank", str(bank))
    pick = next(i for i in report["items"] if i["question"] == "pick")
    assert [(o["label"], o["count"], o["is_key"]) for o in pick["options"]] == [
        ("A", 3, True), ("B", 1, False), ("C", 1, False), ("D", 0, False)]


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def simulate_cohort(students: int = 400, seed: int = 11) -> tuple[list[ItemResult], dict[str, float], str]:
    """2PL: P(correct) = sigmoid(a (theta - b)). Item 'q07' has a wrong key: students who know
    the answer pick A, the bank keys B, so strong students are marked wrong."""
    rng = random.Random(seed)
    difficulties = {f"q{j:02d}": -2.0 + 4.0 * j / 11 for j in range(12)}
    slopes = {q: 0.8 + 1.2 * rng.random() for q in difficulties}
    reversed_item = "q07"
    rows: list[ItemResult] = []
    for s in range(students):
        theta = rng.gauss(0, 1)
        for question, b in difficulties.items():
            knows = rng.random() < sigmoid(slopes[question] * (theta - b))
            if question == reversed_item:
                choice = "A" if knows else rng.choice("BCD")
                rows.append(result(f"s{s:03d}", question, float(choice == "B"), "mcq", choice))
            elif j_is_mcq(question):
                choice = "A" if knows else rng.choice("BCD")
                rows.append(result(f"s{s:03d}", question, float(knows), "mcq", choice))
            else:
                rows.append(result(f"s{s:03d}", question, float(knows), "numeric", "1.0"))
    return rows, difficulties, reversed_item


def j_is_mcq(question: str) -> bool:
    return int(question[1:]) % 2 == 0


def ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    for rank, i in enumerate(order):
        out[i] = float(rank)
    return out


def test_simulated_cohort_estimates_track_the_truth(tmp_path: Path) -> None:
    rows, difficulties, reversed_item = simulate_cohort()
    report = stats_json(write_results(tmp_path / "cohort", rows))
    items = {i["question"]: i for i in report["items"]}
    normal = [q for q in difficulties if q != reversed_item]
    spearman = statistics.correlation(
        ranks([items[q]["facility"] for q in normal]), ranks([-difficulties[q] for q in normal]))
    assert spearman > 0.9
    bad = items[reversed_item]
    assert bad["point_biserial"] < 0 and bad["upper_lower"] < 0
    assert any(f.startswith("negative discrimination") for f in bad["flags"])
    for q in normal:
        assert items[q]["point_biserial"] > 0.1, q
        assert not any(f.startswith("negative") for f in items[q]["flags"])
    assert items["q00"]["flags"] and items["q00"]["flags"][0].startswith("too easy")
    assert any(f.startswith("too hard") for f in items["q11"]["flags"])
    assert 0.5 < report["quiz"]["cronbach_alpha"] < 0.9
    # the reversed item's key B is chosen by weaker students than its true answer A
    options = {o["label"]: o for o in bad["options"]}
    assert options["A"]["mean_rest_score"] > options["B"]["mean_rest_score"]
    assert options["A"]["is_key"] is False and options["B"]["is_key"] is True


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.urls += [v or "" for k, v in attrs if k in ("src", "href") and not (v or "").startswith("#")]


def test_html_report_is_self_contained_and_escaped(tmp_path: Path) -> None:
    rows = tiny_results()
    rows.append(result("s1", "<script>alert(1)</script>", 1.0, "mcq", "A"))
    rows.append(result("s2", "<script>alert(1)</script>", 0.0, "mcq", "B"))
    folder = write_results(tmp_path / "quiz", rows)
    out = tmp_path / "report" / "stats.html"
    done = runner.invoke(app, ["stats", str(folder), "--out", str(out), "--bank", str(folder)])
    assert done.exit_code == 0, done.stderr
    html = out.read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    parser = _Collector()
    parser.feed(html)
    assert parser.urls == []
    assert parser.tags.count("svg") == 2 + 2  # histogram, item map, two MCQs' option bars
    assert re.search(r"Cronbach's alpha 0\.\d\d", html)


def test_bad_input_gives_clear_messages(tmp_path: Path) -> None:
    done = runner.invoke(app, ["stats", str(tmp_path / "missing")])
    assert done.exit_code == 2 and "does not exist" in done.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    done = runner.invoke(app, ["stats", str(empty)])
    assert done.exit_code == 2 and "results.jsonl not found" in done.stderr
    folder = write_results(tmp_path / "partial", tiny_results())
    with (folder / "results.jsonl").open("a") as handle:
        handle.write('{"student": "s9", "quest')
    before = (folder / "results.jsonl").read_bytes()
    done = runner.invoke(app, ["stats", str(folder), "--json"])
    assert done.exit_code == 0
    assert "incomplete last line" in done.stderr
    assert (folder / "results.jsonl").read_bytes() == before


def test_results_from_several_quizzes_are_refused(tmp_path: Path) -> None:
    """Pooling two quizzes' items would report nonsense; the message says how to split them."""
    lines = [
        ItemResult(student=s, question="q", kind="mcq", passed=True, score=1, points=1, max_points=1, quiz=quiz)
        for s, quiz in (("ada", "week-5"), ("ben", "week-6"), ("cai", "week-6"))
    ]
    (tmp_path / "results.jsonl").write_text("".join(i.model_dump_json() + "\n" for i in lines))
    done = runner.invoke(app, ["stats", str(tmp_path), "--json"])
    assert done.exit_code == 2 and done.stdout == ""
    assert "mixes results of 2 quizzes: week-5 (1 student(s)), week-6 (2 student(s))" in done.stderr
    assert "--quiz" in done.stderr


RICH_BANK = [
    {"id": "pick", "kind": "mcq", "topics": ["kl"], "difficulty": "beginner", "source": "original",
     "stem": "Pick", "answer": "A", "explanation": "A.",
     "options": [{"label": "A", "text": "The KL term $D_{KL}(q \\| p)$ regularises"},
                 {"label": "B", "text": "It <b>reconstructs</b>"},
                 {"label": "C", "code": "z = mu + std * eps"}]},
]
RICH_QUIZ = "id: week-9\ntitle: Week 9 <quiz>\nselect:\n  - ids: [pick]\n"


def rich_results() -> list[ItemResult]:
    """Five students: an MCQ, a code question with checks, a shape and a number answered wrong."""
    rows = []
    checks = {"s1": (True, True), "s2": (False, True), "s3": (False, False), "s4": (True, False), "s5": (False, True)}
    shapes = {"s1": "(64, 20)", "s2": "20x64", "s3": "[20, 64]", "s4": "(64,)", "s5": "twenty"}
    numbers = {"s1": "0.5", "s2": "1/4", "s3": "0.25", "s4": "2", "s5": "0.50"}
    for student, scores in TINY.items():
        rows.append(result(student, "pick", scores[0], "mcq", TINY_CHOICES[student]).model_copy(update={"quiz": "week-9"}))
        shape_ok, close_ok = checks[student]
        code = result(student, "write-z", (shape_ok + close_ok) / 2, "code", "z = ...").model_copy(update={
            "quiz": "week-9",
            "checks": [CheckResult(name="z has the shape of mu", passed=shape_ok),
                       CheckResult(name="z matches the reference", passed=close_ok)]})
        rows.append(code)
        rows.append(result(student, "shape-z", float(student == "s1"), "shape", shapes[student]).model_copy(update={"quiz": "week-9"}))
        rows.append(result(student, "kl-value", float(student in ("s1", "s5")), "numeric", numbers[student]).model_copy(update={"quiz": "week-9"}))
    return rows


def write_rich(tmp_path: Path) -> tuple[Path, Path]:
    bank = tmp_path / "bank"
    bank.mkdir()
    (bank / "q.yaml").write_text(yaml.safe_dump(RICH_BANK))
    (bank / "week9.quiz.yaml").write_text(RICH_QUIZ)
    return write_results(tmp_path / "graded", rich_results()), bank


def test_report_explains_items_in_the_quizs_terms(tmp_path: Path) -> None:
    folder, bank = write_rich(tmp_path)
    report = stats_json(folder, "--bank", str(bank))
    assert report["quiz"]["title"] == "Week 9 <quiz>"
    assert "Only 5 student(s)" in report["quiz"]["caution"]
    items = {i["question"]: i for i in report["items"]}
    options = {o["label"]: (o["text"], o["code"]) for o in items["pick"]["options"]}
    assert options["C"] == (None, "z = mu + std * eps") and options["B"][0] == "It <b>reconstructs</b>"
    assert items["write-z"]["check_failures"] == [
        {"name": "z has the shape of mu", "failed": 3, "share": 0.6},
        {"name": "z matches the reference", "failed": 2, "share": 0.4}]
    # 20x64 and [20, 64] are one answer as the grader reads them; unreadable text as written
    assert items["shape-z"]["wrong_answers"] == [
        {"answer": "(20, 64)", "count": 2}, {"answer": "(64,)", "count": 1}, {"answer": "twenty", "count": 1}]
    assert items["kl-value"]["wrong_answers"] == [{"answer": "0.25", "count": 2}, {"answer": "2", "count": 1}]
    assert [i["number"] for i in report["items"]] == [1, 2, 3, 4]


def test_no_caution_for_a_large_cohort(tmp_path: Path) -> None:
    rows, _, _ = simulate_cohort(students=40)
    assert stats_json(write_results(tmp_path / "cohort", rows))["quiz"]["caution"] is None
