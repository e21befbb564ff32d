"""CHECKOUT_STEPS: groups, the kinds they give the steps, and every rule a plan must keep."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.saga.plan import PlanError, StepKind, parse_plan
from orchestrator.settings import Settings

C, P, R = StepKind.COMPENSATABLE, StepKind.PIVOT, StepKind.RETRIABLE


@pytest.mark.parametrize(
    ("text", "groups", "kinds"),
    [
        # The default: in sequence, the last step (the email) is the pivot.
        ("warehouse,rewards,email", [["warehouse"], ["rewards"], ["email"]], [C, C, P]),
        # Reserve first (the go/no-go), then credit and email at once, to completion.
        ("warehouse,rewards+email", [["warehouse"], ["rewards", "email"]], [P, R, R]),
        # Credit and reserve at once, both undone if either fails; then the email.
        ("rewards+warehouse,email", [["rewards", "warehouse"], ["email"]], [C, C, P]),
        ("warehouse+rewards,email", [["warehouse", "rewards"], ["email"]], [C, C, P]),
        # The card's order: the email first, undone by a cancellation if the warehouse refuses.
        ("email,warehouse,rewards", [["email"], ["warehouse"], ["rewards"]], [C, C, P]),
        ("rewards+email,warehouse", [["rewards", "email"], ["warehouse"]], [C, C, P]),
        (" warehouse , email + rewards ", [["warehouse"], ["email", "rewards"]], [P, R, R]),
    ],
)
def test_the_kinds_follow_from_the_groups(
    text: str, groups: list[list[str]], kinds: list[StepKind]
) -> None:
    """Groups split on ',' and '+'; the last lone step is the pivot, before it compensatable."""
    plan = parse_plan(text)

    assert [list(group) for group in plan.groups] == groups
    assert [plan.kind(name) for name in plan.order] == kinds
    assert str(plan) == text.replace(" ", "")
    assert parse_plan(str(plan)) == plan


def test_only_retriable_steps_and_the_email_run_to_completion() -> None:
    """Retried until they succeed, so starting one ends the time a cancel is accepted."""
    concurrent = parse_plan("warehouse,rewards+email")
    assert [concurrent.runs_to_completion(n) for n in concurrent.order] == [False, True, True]
    default = parse_plan("warehouse,rewards,email")
    assert [default.runs_to_completion(n) for n in default.order] == [False, False, True]
    # The email cannot be taken back, wherever it stands.
    email_first = parse_plan("email,warehouse,rewards")
    assert [email_first.runs_to_completion(n) for n in email_first.order] == [True, False, False]


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("warehouse,rewards", "missing email"),
        ("warehouse,rewards,email,rewards", "named twice: rewards"),
        ("warehouse,rewards+rewards,email", "named twice: rewards"),
        ("warehouse,points,email", "unknown points"),
        ("warehouse,,rewards,email", "empty step"),
        ("warehouse,rewards+,email", "empty step"),
        ("warehouse+rewards+email", "has no pivot"),
        ("warehouse+rewards,email+warehouse", "named twice"),
        ("rewards,warehouse+email", "puts warehouse after the pivot (rewards)"),
        ("email,rewards+warehouse", "puts warehouse after the pivot (email)"),
    ],
)
def test_a_plan_breaking_a_rule_is_refused_naming_it(text: str, rule: str) -> None:
    """Each broken rule is named in the error, with the plan as written."""
    with pytest.raises(PlanError, match="CHECKOUT_STEPS") as raised:
        parse_plan(text)
    assert rule in str(raised.value)
    with pytest.raises(ValidationError, match="CHECKOUT_STEPS") as invalid:
        Settings(checkout_steps=text)
    assert rule in str(invalid.value)


def test_every_permutation_in_sequence_stays_valid() -> None:
    """The contract's promise: any order of the three steps, one after another, works."""
    for text in (
        "warehouse,rewards,email",
        "warehouse,email,rewards",
        "rewards,warehouse,email",
        "rewards,email,warehouse",
        "email,warehouse,rewards",
        "email,rewards,warehouse",
    ):
        plan = Settings(checkout_steps=text).plan
        assert plan.order == text.split(",")
        assert plan.pivot == plan.order[-1]


def test_choreography_refuses_concurrent_groups() -> None:
    """Under choreography each service acts on the event before it: groups are refused."""
    with pytest.raises(ValidationError, match="only orchestration does"):
        Settings(checkout_steps="warehouse,rewards+email", coordination="choreography")
    assert Settings(checkout_steps="rewards,warehouse,email", coordination="choreography")


def test_serve_refuses_a_broken_plan_in_one_line_with_exit_code_2() -> None:
    """`checkout-suite serve orchestrator` names the setting and the rule, without a traceback."""
    environment = os.environ | {"CHECKOUT_STEPS": "rewards,warehouse+email"}
    finished = subprocess.run(
        [
            str(Path(sys.executable).with_name("checkout-suite")),
            "serve",
            "orchestrator",
            "--port",
            "1",
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 2, finished.stderr
    assert finished.stderr.strip().splitlines() == [
        "orchestrator: invalid CHECKOUT_STEPS: CHECKOUT_STEPS 'rewards,warehouse+email' puts "
        "warehouse after the pivot (rewards): steps after the pivot are retried until they "
        "succeed and never compensated, and warehouse may be refused for good (out of stock); "
        "run it at the pivot or before it"
    ]
    assert "Traceback" not in finished.stdout + finished.stderr
