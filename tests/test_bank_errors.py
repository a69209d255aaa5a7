"""Bad bank input: every case gives file:line:column, a message an author can act on, exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from vaequiz.bank.loader import load_bank

VALID = """
- id: kl-role
  kind: mcq
  topics: [kl-divergence]
  difficulty: beginner
  source: original
  stem: What does the KL term do?
  options:
    - {label: A, text: Pulls the posterior toward the prior}
    - {label: B, text: Nothing}
  answer: A
  explanation: It regularises the latent space.
"""


def _problems(bank: Path) -> list[str]:
    return [str(p) for p in load_bank(bank).problems]


def _assert_cli_reports(cli, bank: Path, expected: str) -> None:
    result = cli("validate", bank)
    assert result.returncode == 1, result.stderr
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_valid_bank_passes(cli, write_yaml) -> None:
    bank = write_yaml("a.yaml", VALID)
    result = cli("validate", bank)
    assert result.returncode == 0, result.stderr
    assert "ok: 1 questions" in result.stdout


def test_typo_in_field_name_points_at_the_key_and_suggests(cli, write_yaml) -> None:
    bank = write_yaml("a.yaml", VALID.replace("explanation:", "explaination:"))
    _assert_cli_reports(
        cli, bank, "bank/a.yaml:11:3: explaination: unknown field 'explaination'; did you mean 'explanation'?"
    )


def test_typo_in_nested_field_suggests_from_the_nested_model(write_yaml) -> None:
    bank = write_yaml("a.yaml", VALID.replace("{label: B, text: Nothing}", "{label: B, txt: Nothing}"))
    problems = _problems(bank)
    assert any(p.endswith("a.yaml:9:18: options.1.txt: unknown field 'txt'; did you mean 'text'?") for p in problems), problems


def test_missing_field_points_at_its_question(write_yaml) -> None:
    bank = write_yaml("a.yaml", VALID.replace("  explanation: It regularises the latent space.\n", ""))
    problems = _problems(bank)
    assert any(p.endswith("a.yaml:1:3: explanation: missing required field 'explanation' (say why the key is right)") for p in problems), problems


def test_key_not_among_options(write_yaml) -> None:
    bank = write_yaml("a.yaml", VALID.replace("answer: A", "answer: E"))
    problems = _problems(bank)
    assert any("a.yaml:12:11: answer: answer E is not one of the options (A, B)" in p for p in problems) or any(
        "answer E is not one of the options" in p for p in problems
    ), problems


def test_duplicate_options_and_single_key_multi_select(write_yaml) -> None:
    text = VALID.replace("text: Nothing", "text: Pulls the posterior toward the prior")
    assert any("options A and B are identical" in p for p in _problems(write_yaml("a.yaml", text)))
    text = VALID.replace("answer: A", "answer: [A]\n  multiple: true")
    assert any("needs at least two keys" in p for p in _problems(write_yaml("a.yaml", text)))


def test_yaml_syntax_error_has_its_line(cli, write_yaml) -> None:
    bank = write_yaml("a.yaml", VALID.replace("  stem: What does", "  stem: [What does"))
    result = cli("validate", bank)
    assert result.returncode == 1
    assert "bank/a.yaml:" in result.stderr and "YAML syntax error" in result.stderr
    line = int(result.stderr.split("a.yaml:")[1].split(":")[0])
    assert 7 <= line <= 12


def test_tab_indentation(cli, write_yaml) -> None:
    bank = write_yaml("a.yaml", VALID.replace("  stem:", "\tstem:"))
    _assert_cli_reports(cli, bank, "bank/a.yaml:6:1: tab character in indentation; YAML indents with spaces only")


def test_non_utf8_bytes(cli, tmp_path: Path) -> None:
    bank = tmp_path / "bank"
    bank.mkdir()
    (bank / "a.yaml").write_bytes(VALID.lstrip().encode().replace(b"Nothing", b"Nothing \xff\xfe"))
    _assert_cli_reports(cli, bank, "bank/a.yaml:9:32: byte 0xff is not UTF-8; save the file as UTF-8")


def test_duplicate_ids_within_and_across_files(cli, write_yaml) -> None:
    write_yaml("a.yaml", VALID + VALID.replace("- id: kl-role", "- id: kl-role", 1))
    bank = write_yaml("b.yaml", VALID)
    result = cli("validate", bank)
    assert result.returncode == 1
    first = "bank/a.yaml:1:3); ids must be unique across the bank"
    lines = result.stderr.splitlines()
    assert any("bank/a.yaml:13:7: id: duplicate id 'kl-role' (first defined at " in l and first in l for l in lines)
    assert any("bank/b.yaml:1:7: id: duplicate id 'kl-role' (first defined at " in l and first in l for l in lines)


def test_duplicate_key_in_a_mapping(cli, write_yaml) -> None:
    bank = write_yaml("a.yaml", VALID.replace("  source: original", "  source: original\n  difficulty: advanced"))
    _assert_cli_reports(cli, bank, "bank/a.yaml:6:3: duplicate key 'difficulty' (first at line 4)")


def test_alias_bomb_is_refused_quickly(cli, write_yaml) -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]")
    bank = write_yaml("bomb.yaml", "\n".join(lines) + "\n")
    result = cli("validate", bank, timeout=60)
    assert result.returncode == 1
    assert "bomb.yaml:" in result.stderr and "billion laughs" in result.stderr


def test_deep_nesting_is_refused(cli, tmp_path: Path) -> None:
    bank = tmp_path / "bank"
    bank.mkdir()
    (bank / "deep.yaml").write_text("[" * 20_000 + "]" * 20_000 + "\n", encoding="utf-8")
    result = cli("validate", bank, timeout=60)
    assert result.returncode == 1
    assert "bank/deep.yaml:1:65: nesting deeper than 64 levels" in result.stderr


def test_deep_block_nesting_is_refused(write_yaml) -> None:
    bank = write_yaml("deep.yaml", "- " * 20_000 + "x\n")
    assert any("nesting deeper than 64 levels" in p for p in _problems(bank))


def test_huge_file_is_refused_without_reading_it(cli, tmp_path: Path) -> None:
    bank = tmp_path / "bank"
    bank.mkdir()
    with open(bank / "huge.yaml", "w", encoding="utf-8") as handle:
        handle.write(VALID)
        handle.write("# padding " + "x" * 1000 + "\n" * 1)
        handle.seek(30 * 1024 * 1024)
        handle.write("\n")
    result = cli("validate", bank, timeout=60)
    assert result.returncode == 1
    assert "bank/huge.yaml:1:1: file is 31.5 MB; YAML files are limited to 5 MB" in result.stderr


def test_empty_file_and_empty_list(cli, write_yaml) -> None:
    write_yaml("empty.yaml", "")
    bank = write_yaml("list.yaml", "[]\n")
    result = cli("validate", bank)
    assert result.returncode == 1
    assert "bank/empty.yaml:1:1: file is empty" in result.stderr
    assert "bank/list.yaml:1:1: file holds an empty list" in result.stderr


def test_every_problem_is_reported_in_one_run(write_yaml) -> None:
    broken = (
        VALID.replace("explanation:", "explaination:")
        + VALID.replace("kl-role", "Bad_Id")
        + VALID.replace("kl-role", "other").replace("kind: mcq", "kind: mcqq")
    )
    problems = _problems(write_yaml("a.yaml", broken))
    assert len(problems) == 4, problems
    assert "missing required field 'explanation'" in problems[0]
    assert "did you mean 'explanation'?" in problems[1]
    assert "not kebab-case" in problems[2]
    assert "unknown kind 'mcqq'" in problems[3]


def test_yaml_boolean_in_text_field_is_explained(write_yaml) -> None:
    bank = write_yaml("a.yaml", VALID.replace("text: Nothing", "text: yes"))
    assert any("read this value as the boolean true" in p for p in _problems(bank))


def test_code_question_cross_field_rules(write_yaml) -> None:
    code = """
    - id: kl
      kind: code
      topics: [kl-divergence]
      difficulty: advanced
      source: original
      prompt: Compute kl.
      explanation: closed form
      given:
        mu: {type: tensor, shape: [B, D]}
      expect: [kl]
      reference: "kll = mu.sum()"
      trials: [{bind: {B: 3}}]
      checks:
        - {check: close, of: kl}
        - {check: shape, of: kl, is: [[]], like: mu}
    """
    problems = _problems(write_yaml("c.yaml", code))
    # One run reports every broken rule, each at the value it is about.
    assert [p.split("/bank/")[1] for p in problems] == [
        "c.yaml:11:14: reference: the reference never assigns kl, which 'expect' lists",
        "c.yaml:12:19: trials.0.bind: trials[0] does not bind D (used by given 'mu')",
        "c.yaml:15:7: checks.1: a shape check needs exactly one of 'is' and 'like'",
    ]


def test_mcq_linked_to_missing_code_question(write_yaml) -> None:
    text = VALID.replace("  answer: A", "  answer: A\n  code_question: nowhere").replace(
        "{label: A, text: Pulls the posterior toward the prior}", "{label: A, code: 'z = 1'}"
    ).replace("{label: B, text: Nothing}", "{label: B, code: 'z = 2'}")
    problems = _problems(write_yaml("a.yaml", text))
    assert any("a.yaml:11:18: code_question: 'nowhere' is no question" in p for p in problems), problems


@pytest.mark.parametrize("args", [("validate", "/no/such/folder"), ("list", "--nope"), ("frobnicate",)])
def test_usage_errors_exit_2(cli, args) -> None:
    result = cli(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr


def test_typos_deep_in_unions_are_matched_against_the_right_member(write_yaml) -> None:
    code = """
    - id: kl
      kind: code
      topics: [kl-divergence]
      difficulty: advanced
      source: original
      prompt: Compute kl.
      explanation: closed form
      given:
        mu: {type: tensor, shape: [B, D]}
        beta: {type: float, valu: 0.5}
      expect: [kl]
      reference: "kl = mu.sum()"
      trials: [{bind: {B: 3, D: 2}}]
      checks:
        - {check: shape, of: kl, is: [[]]}
        - {check: close, of: kl, rtoll: 0.01}
    """
    problems = _problems(write_yaml("c.yaml", code))
    assert any(p.endswith("c.yaml:10:25: given.beta.valu: unknown field 'valu'; did you mean 'value'?") for p in problems), problems
    assert any(p.endswith("c.yaml:16:30: checks.1.rtoll: unknown field 'rtoll'; did you mean 'rtol'?") for p in problems), problems


def test_every_mistake_in_one_question_is_reported_in_one_run_at_its_own_field(cli, write_yaml) -> None:
    broken = """
    - id: kl-role
      kind: mcq
      topics: [kl-divergence, kl-divergence]
      difficulty: beginner
      points: -1
      source: original
      stem: What does the KL term do?
      options:
        - {label: A, text: Pulls the posterior toward the prior}
        - {label: C, text: Nothing}
        - {label: C, text: Nothing}
        - {label: D, text: 42}
      multiple: true
      answer: [A, E, A]
    """
    result = cli("validate", write_yaml("a.yaml", broken))
    assert result.returncode == 1
    lines = [line.split("/bank/")[1] for line in result.stderr.splitlines() if "/bank/" in line]
    assert lines == [
        "a.yaml:1:3: explanation: missing required field 'explanation' (say why the key is right)",
        "a.yaml:3:27: topics.1: topic listed twice: kl-divergence",
        "a.yaml:5:11: points: Input should be greater than or equal to 0",
        "a.yaml:10:15: options.1.label: option 2 must be labelled B (options are labelled A, B, C, ... in order); got C",
        "a.yaml:11:7: options.2: options B and C are identical",
        "a.yaml:12:24: options.3.text: Input should be a valid string; YAML read this value as the number 42: put it in quotes",
        "a.yaml:14:15: answer.1: answer E is not one of the options (A, B, C, D)",
        "a.yaml:14:18: answer.2: answer lists A twice",
    ], result.stderr
    assert "8 problem(s) in 1 file(s)" in result.stderr


def test_formula_that_cannot_render_is_a_located_validate_problem(cli, write_yaml) -> None:
    text = VALID.replace(
        "  explanation: It regularises the latent space.",
        "  explanation: It regularises the latent space, $\\frac{1}$ of the time.\n"
        "  hint: |\n    Compare `$HOME` with\n    $$\\sum_i \\notacommand{x_i}$$",
    )
    bank = write_yaml("a.yaml", text)
    result = cli("validate", bank)
    assert result.returncode == 1, result.stdout
    lines = [line.split("/bank/")[1] for line in result.stderr.splitlines() if "/bank/" in line]
    assert lines == [
        "a.yaml:11:16: explanation: cannot render the formula $\\frac{1}$: incomplete <mfrac>: "
        "a group or argument is missing; fix the LaTeX (`vaequiz render` shows the result)",
        "a.yaml:12:9: hint: cannot render the formula $\\sum_i \\notacommand{x_i}$: unknown "
        "command \\notacommand; fix the LaTeX (`vaequiz render` shows the result)",
    ], result.stderr
    lint = cli("lint", bank)
    errors = [line for line in lint.stdout.splitlines() + lint.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 2 and "a.yaml:11:16: error: explanation: cannot render" in errors[0], errors


def test_the_bank_package_never_imports_render() -> None:
    """Layers: bank < render; the formula check lives in a module both may use."""
    import ast

    from tests.conftest import REPO

    for file in sorted((REPO / "vaequiz/bank").glob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                assert not name.startswith(("vaequiz.render", "vaequiz.grading", "vaequiz.export",
                                            "vaequiz.stats", "vaequiz.cli")), (file, name)


def test_code_question_rules_are_reported_with_its_field_errors_in_one_run(cli, write_yaml) -> None:
    code = """
    - id: kl
      kind: code
      topics: [kl-divergence]
      difficulty: advanced
      source: original
      prompt: Compute kl.
      explanation: closed form
      given:
        mu: {type: tensor, shape: [B, D], requires_grad: true}
        beta: {type: float, valu: 0.5}
        torch: {type: float, value: 2}
      expect: [kl]
      reference: "kl = mu.sum("
      trials: [{bind: {B: 3}}]
      probes:
        - {probe: grad, of: kl, wrt: [nu]}
      checks:
        - {check: close, of: kl2}
        - {check: gradient, of: kl, wrt: [mu]}
    """
    result = cli("validate", write_yaml("c.yaml", code))
    assert result.returncode == 1
    lines = [line.split("/bank/")[1] for line in result.stderr.splitlines() if "/bank/" in line]
    assert lines == [
        "c.yaml:10:11: given.beta.value: missing required field 'value'",
        "c.yaml:10:25: given.beta.valu: unknown field 'valu'; did you mean 'value'?",
        "c.yaml:11:12: given.torch: 'torch' is bound by the grader already",
        "c.yaml:13:14: reference: reference is not valid Python: line 1: '(' was never closed",
        "c.yaml:14:19: trials.0.bind: trials[0] does not bind D (used by given 'mu')",
        "c.yaml:16:35: probes.0.wrt.0: grad probe wrt 'nu', which is not a given name",
        "c.yaml:18:26: checks.0.of: check 'close' refers to 'kl2', which is neither given, expected nor produced by a probe",
        "c.yaml:19:7: checks.1: gradient check of 'kl' wrt mu needs a matching 'grad' probe",
    ], result.stderr


def test_a_fit_probe_must_stop_early_only_below_its_check_threshold(cli, write_yaml) -> None:
    """A probe that stopped at a loss the check still fails would fail learners that would pass."""
    code = """
    - id: dec
      kind: code
      topics: [architecture]
      difficulty: intermediate
      source: original
      prompt: Bind decoder.
      explanation: A sigmoid output.
      given:
        latent_dim: {type: int, value: 4}
      expect: [decoder]
      reference: "decoder = nn.Sequential(nn.Linear(latent_dim, 784), nn.Sigmoid())"
      trials: [{bind: {}}]
      probes:
        - {probe: fit, fn: decoder, input: {type: tensor, shape: [6, 4]}, target: {type: tensor, shape: [6, 784], dist: bernoulli}, stop_below: 0.3, as: fitted}
        - {probe: fit, fn: decoder, input: {type: tensor, shape: [6, 4]}, target: {type: tensor, shape: [6, 784], dist: bernoulli}, stop_below: 0, as: again}
      checks:
        - {check: fit, of: fitted, below: 0.2}
        - {check: fit, of: fitted, below: 0.5}
    """
    result = cli("validate", write_yaml("c.yaml", code))
    assert result.returncode == 1
    lines = [line.split("/bank/")[1] for line in result.stderr.splitlines() if "/bank/" in line]
    assert lines == [
        "c.yaml:15:141: probes.1.stop_below: Input should be greater than 0",
        "c.yaml:17:39: checks.0.below: fit check of 'fitted' passes below 0.2, but its probe stops training "
        "at 0.3; stop_below must be lower, or a model stopped there would fail",
    ], result.stderr
