"""The classification tasks: what an input, a prediction, "correct" and a valid target are."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gate.errors import DataError
from gate.policy.specs import ALL_CHECK_SPECS, kind_of
from gate.tasks import TASKS, infer_task
from gate.tasks.classification import IMAGE_CLASSIFICATION, TABULAR_CLASSIFICATION, is_correct


def test_every_task_names_only_real_check_kinds():
    kinds = {kind_of(spec) for spec in ALL_CHECK_SPECS}
    assert IMAGE_CLASSIFICATION.check_kinds == kinds
    for task in TASKS.values():
        assert task.check_kinds <= kinds
        assert {kind for kind, _ in task.why_not} == kinds - task.check_kinds  # every refusal explained


def test_prediction_is_the_top_class_and_correct_compares_with_the_label():
    scores = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5], [0.0, 0.0, 9.0]])
    labels = torch.tensor([1, 2, 2])
    for task in TASKS.values():
        predictions = task.predict(scores)
        assert predictions.tolist() == [1, 0, 2]
        assert task.correct(predictions, labels).tolist() == [True, False, True]
    assert is_correct(scores, labels).tolist() == [True, False, True]


@pytest.mark.parametrize(
    ("shape", "expected"), [((1, 8, 8), "image_classification"), ((30,), "tabular_classification")]
)
def test_the_task_is_inferred_from_the_sample_shape(shape, expected):
    task = infer_task(shape, "data.npz")
    assert task.name == expected
    assert task.input_problem(shape) is None


def test_a_shape_no_task_takes_is_a_data_error_naming_both_layouts():
    with pytest.raises(DataError) as caught:
        infer_task((4, 8), "data.npz")
    text = caught.value.render()
    assert "[N, 4, 8]" in text and "images [N, C, H, W]" in text and "features [N, F]" in text
    assert caught.value.exit_code == 2


def test_input_problem_names_the_task_and_the_found_layout():
    problem = IMAGE_CLASSIFICATION.input_problem((30,))
    assert problem is not None and "image_classification" in problem and "[N, 30]" in problem


def test_targets_must_index_the_outputs():
    assert TABULAR_CLASSIFICATION.target_problem(1, 2) is None
    problem = TABULAR_CLASSIFICATION.target_problem(2, 2)
    assert problem is not None and "labels go up to 2" in problem and "0..1" in problem


def test_a_refused_kind_says_why():
    # No task refuses a whole kind today (tabular attributions are refused per method and metric), so
    # the rule is read on a task that would.
    without = dataclasses.replace(
        TABULAR_CLASSIFICATION,
        check_kinds=TABULAR_CLASSIFICATION.check_kinds - {"attribution"},
        why_not=(("attribution", "its maps are defined on images"),),
    )
    refusal = without.refusal("attribution")
    assert refusal is not None and "tabular_classification" in refusal and "images" in refusal
    assert without.refusal("adversarial") is None and TABULAR_CLASSIFICATION.refusal("attribution") is None


def test_the_catalogues_name_only_real_tasks_and_input_kinds():
    from gate.attacks.catalogue import CATALOGUE
    from gate.policy.specs import CORRUPTION_INPUTS
    from gate.tasks.base import INPUT_LAYOUTS

    for info in CATALOGUE.values():
        assert set(info.tasks) <= set(TASKS), info.name
    for name, kinds in CORRUPTION_INPUTS.items():
        assert set(kinds) <= set(INPUT_LAYOUTS), name
    # Every task can be evaluated by at least one attack and one corruption.
    for task in TASKS.values():
        assert any(task.name in info.tasks for info in CATALOGUE.values())
        assert any(task.input_kind in kinds for kinds in CORRUPTION_INPUTS.values())
