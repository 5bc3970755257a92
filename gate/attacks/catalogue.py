"""What gate knows about each attack, without importing torch: the one list that the policy format, ``gate
policy explain``, ``gate policy diff``, the adversarial check and docs/attacks.md all read.

The implementations live one per module beside this file and are registered by name in ``registry.py``;
``tests/attacks/test_catalogue.py`` holds the two lists to each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gate.tasks.classification import IMAGE_CLASSIFICATION as _IMAGES
from gate.tasks.classification import TABULAR_CLASSIFICATION as _TABULAR

# The task names, as gate/tasks/ defines them (each attack lists the tasks whose inputs it can perturb).
IMAGE_CLASSIFICATION = _IMAGES.name
TABULAR_CLASSIFICATION = _TABULAR.name
NORMS: tuple[str, ...] = ("linf", "l2")
OPTIONS: tuple[str, ...] = ("steps", "restarts", "step_size", "queries", "targeted")
"""The policy fields that tune an attack; each attack reads some of them (``AttackInfo.options``)."""

MAX_TARGET_CLASSES = 9  # AutoAttack's standard: the 2nd..10th most likely clean classes


@dataclass(frozen=True)
class AttackInfo:
    """One attack as policies, reviewers and the docs see it.

    Args:
        name: As a policy writes it (``attack: apgd-ce``) and as ``registry.ATTACKS`` keys it.
        class_name: The implementing class in ``gate.attacks``.
        title: How a reviewer names it (``APGD-CE``).
        description: One sentence on what it does, read in ``gate policy explain``.
        paper: Where it comes from.
        strength: Its rank for ``gate policy diff`` (higher is stronger); ``None`` for an attack of another
            family (the black-box ``square``) that only ``contains`` can order.
        contains: The attacks it runs in full as its own stages, so it is at least as strong as each.
        needs_gradients: White-box: it takes input gradients of the model, not only its outputs.
        supports_targeted: It has a targeted version (``targeted: true`` is accepted).
        always_targeted: It runs targeted whatever the policy says (APGD-T, FAB-T).
        norms: The threat models it implements.
        tasks: The tasks whose inputs it can perturb (Square's windows need images ``[N, C, H, W]``).
        default_steps: Iterations when the policy gives no ``steps``.
        default_queries: Model queries per sample when the policy gives no ``queries``.
        options: The policy fields (of ``OPTIONS``) it reads; a policy setting any other is refused.
        queries_argument: The constructor keyword that takes the policy's ``queries``.
        scans_target_classes: It runs once per target class, as many as the model's classes allow.
        masking_diagnosis: ``gradient_masking`` can diagnose it (a white-box attack with steps and restarts).
        min_classes: The fewest classes the model may have; known only once the model is loaded.
    """

    name: str
    class_name: str
    title: str
    description: str
    paper: str
    strength: int | None
    needs_gradients: bool
    supports_targeted: bool
    norms: tuple[str, ...]
    tasks: tuple[str, ...]
    options: tuple[str, ...]
    default_steps: int | None = None
    default_queries: int | None = None
    contains: tuple[str, ...] = ()
    always_targeted: bool = False
    queries_argument: str | None = None
    scans_target_classes: bool = False
    masking_diagnosis: bool = False
    min_classes: int = 2
    """Fewest model outputs it works with (the targeted DLR loss ranks the 3rd and 4th largest logits)."""
    feature_space: bool = False
    """It searches the policy's constrained feature space (gate/attacks/feature_space.py): ε is then in
    standardised units of each feature, and ranges, types, immutability and constraints bind it."""

    @property
    def budget_units(self) -> str:
        """What the policy's ε measures for this attack, in words."""
        if self.feature_space:
            return "standard deviations of each feature (or its declared scale)"
        return "the policy's input range"

    @property
    def summary(self) -> str:
        """``APGD-CE (Croce & Hein 2020)``: the attack named as a reviewer cites it."""
        return f"{self.title} ({self.paper})"


BOTH_TASKS = (IMAGE_CLASSIFICATION, TABULAR_CLASSIFICATION)

CATALOGUE: dict[str, AttackInfo] = {
    info.name: info
    for info in (
        AttackInfo(
            name="fgsm",
            class_name="FGSM",
            title="FGSM",
            description="A single gradient step of length ε (the gradient's sign for L∞, its direction for L2): "
            "a quick floor, far weaker than an iterative attack.",
            paper="Goodfellow et al. 2015",
            strength=0,
            needs_gradients=True,
            supports_targeted=True,
            norms=NORMS,
            tasks=BOTH_TASKS,
            options=("targeted",),
            default_steps=1,
        ),
        AttackInfo(
            name="pgd",
            class_name="PGD",
            title="PGD",
            description="Projected gradient descent: repeated gradient steps on the cross-entropy, each "
            "projected back into the ε-ball; the first run starts at the clean input, each further restart "
            "at a random point in the ball.",
            paper="Madry et al. 2018",
            strength=1,
            needs_gradients=True,
            supports_targeted=True,
            norms=NORMS,
            tasks=BOTH_TASKS,
            options=("steps", "restarts", "step_size", "targeted"),
            default_steps=20,
            masking_diagnosis=True,
        ),
        AttackInfo(
            name="apgd-ce",
            class_name="APGDCE",
            title="APGD-CE",
            description="Auto-PGD on the cross-entropy loss: gradient steps with momentum and a step size the "
            "attack adapts itself, the first stage of AutoAttack.",
            paper="Croce & Hein 2020",
            strength=2,
            needs_gradients=True,
            supports_targeted=False,
            norms=NORMS,
            tasks=BOTH_TASKS,
            options=("steps", "restarts"),
            default_steps=100,
            masking_diagnosis=True,
        ),
        AttackInfo(
            name="apgd-dlr",
            class_name="APGDT",
            title="APGD-DLR",
            description="Auto-PGD on the targeted DLR loss (APGD-T): one run towards each of the most likely "
            "wrong classes, a loss that the scale of the logits cannot hide behind.",
            paper="Croce & Hein 2020",
            strength=2,
            needs_gradients=True,
            supports_targeted=True,
            always_targeted=True,
            norms=NORMS,
            tasks=BOTH_TASKS,
            options=("steps", "restarts"),
            default_steps=100,
            scans_target_classes=True,
            min_classes=4,
        ),
        AttackInfo(
            name="fab",
            class_name="FAB",
            title="FAB",
            description="The fast adaptive boundary attack (FAB-T): a minimum-norm search that linearises the "
            "decision boundary towards each of the most likely wrong classes; a sample counts as broken when "
            "the smallest perturbation found is within ε.",
            paper="Croce & Hein 2020",
            strength=2,
            needs_gradients=True,
            supports_targeted=True,
            always_targeted=True,
            norms=NORMS,
            tasks=BOTH_TASKS,
            options=("steps", "restarts"),
            default_steps=100,
            scans_target_classes=True,
        ),
        AttackInfo(
            name="square",
            class_name="Square",
            title="Square",
            description="A score-based black-box search over random squares of the image: it needs only the "
            "deployed model's outputs, never its gradients, so hidden or misleading gradients cannot stop it.",
            paper="Andriushchenko et al. 2020",
            strength=None,
            needs_gradients=False,
            supports_targeted=False,
            norms=NORMS,
            tasks=(IMAGE_CLASSIFICATION,),
            options=("restarts", "queries"),
            default_queries=5000,
            queries_argument="steps",
        ),
        AttackInfo(
            name="autoattack",
            class_name="AutoAttack",
            title="AutoAttack",
            description="The standard ensemble: APGD-CE, APGD-T, FAB-T and Square in turn, each on the samples "
            "still robust, so a sample counts as robust only if all four fail.",
            paper="Croce & Hein 2020",
            strength=3,
            contains=("apgd-ce", "apgd-dlr", "fab", "square"),
            needs_gradients=True,
            supports_targeted=False,
            norms=NORMS,
            tasks=(IMAGE_CLASSIFICATION,),
            options=("steps", "queries"),
            default_steps=100,
            default_queries=5000,
            queries_argument="square_queries",
            scans_target_classes=True,
            min_classes=4,
        ),
        AttackInfo(
            name="cpgd",
            class_name="ConstrainedPGD",
            title="CPGD",
            description="Constrained PGD on tabular features: gradient steps in standardised units on the "
            "cross-entropy minus a penalty for broken constraints, projected onto ranges, budget and "
            "immutability, equality-determined features recomputed, every iterate rounded to the feature "
            "types and kept only if feasible.",
            paper="Simonetto et al. 2022",
            strength=None,
            needs_gradients=True,
            supports_targeted=False,
            norms=NORMS,
            tasks=(TABULAR_CLASSIFICATION,),
            options=("steps", "restarts"),
            default_steps=100,
            feature_space=True,
        ),
        AttackInfo(
            name="constrained-search",
            class_name="ConstrainedSearch",
            title="Constrained evolutionary search",
            description="A black-box evolutionary search (MoEvA2-style) over feasible feature vectors: "
            "crossover and mutation inside the budget, every child repaired and rounded, scored by the "
            "deployed model only; it needs no gradients, so it attacks tree ensembles.",
            paper="Ghamizi et al. 2020; Simonetto et al. 2022",
            strength=None,
            needs_gradients=False,
            supports_targeted=False,
            norms=NORMS,
            tasks=(TABULAR_CLASSIFICATION,),
            options=("queries",),
            default_queries=2000,
            feature_space=True,
        ),
        AttackInfo(
            name="constrained",
            class_name="ConstrainedAuto",
            title="Constrained ensemble",
            description="CPGD where the model has gradients, then the constrained search on the samples "
            "still robust; a model without gradients (a tree ensemble) gets the search alone, and the "
            "report says which family ran and why.",
            paper="Simonetto et al. 2022",
            strength=None,
            contains=("cpgd", "constrained-search"),
            needs_gradients=False,
            supports_targeted=False,
            norms=NORMS,
            tasks=(TABULAR_CLASSIFICATION,),
            options=("steps", "restarts", "queries"),
            default_steps=100,
            default_queries=2000,
            feature_space=True,
        ),
    )
}


def attack_info(name: str) -> AttackInfo:
    """The catalogue entry of ``name``; a ``KeyError`` names the known attacks."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise KeyError(f"unknown attack {name!r}; known attacks: {', '.join(sorted(CATALOGUE))}") from None


def masking_diagnosable() -> tuple[str, ...]:
    """The attacks ``gradient_masking`` accepts, in catalogue order."""
    return tuple(name for name, info in CATALOGUE.items() if info.masking_diagnosis)


def compare_strength(old: str, new: str) -> int | None:
    """+1 when ``new`` is the stronger attack, -1 when weaker, 0 when equally strong, None when neither
    rank nor containment orders them (Square against a white-box attack it is not part of)."""
    before, after = attack_info(old), attack_info(new)
    if old == new:
        return 0
    if old in after.contains:
        return 1
    if new in before.contains:
        return -1
    if before.strength is None or after.strength is None:
        return None
    return (after.strength > before.strength) - (after.strength < before.strength)


def target_classes(num_classes: int) -> int:
    """How many target classes a per-class attack runs: up to 9, never more than the wrong classes."""
    return max(1, min(MAX_TARGET_CLASSES, num_classes - 1))


def constructor_options(
    name: str,
    *,
    norm: str,
    epsilon: float,
    bounds: tuple[float, float],
    seed: int,
    steps: int | None = None,
    restarts: int = 1,
    step_size: float | None = None,
    queries: int | None = None,
    targeted: bool = False,
    num_classes: int = 10,
) -> dict[str, Any]:
    """The keyword arguments of the attack class for a policy's values, with the catalogue's defaults.

    An option the attack does not read is dropped here; the policy validator refuses it before this runs.
    """
    info = attack_info(name)
    options: dict[str, Any] = {"seed": seed}
    if not info.feature_space:  # a feature-space attack takes its threat (budget and space) whole
        options.update(norm=norm, eps=epsilon, bounds=bounds)
    if "steps" in info.options:
        options["steps"] = steps or info.default_steps
    if "queries" in info.options:
        options[info.queries_argument or "queries"] = queries or info.default_queries
    if "restarts" in info.options:
        options["restarts"] = restarts
    if "step_size" in info.options:
        options["step_size"] = step_size
    if "targeted" in info.options:
        options["targeted"] = targeted
    if info.scans_target_classes:
        options["n_target_classes"] = target_classes(num_classes)
    return options


# What each option means when the policy leaves it out; a value other than this is one the attack must read.
OPTION_DEFAULTS: dict[str, object] = {
    "steps": None,
    "restarts": 1,
    "step_size": None,
    "queries": None,
    "targeted": False,
}


def policy_refusal(name: str, norm: str, values: Mapping[str, object]) -> tuple[str, str] | None:
    """``(field, message)`` for the first value of an adversarial check that ``name`` cannot honour.

    A norm it does not implement, ``targeted: true`` on an attack without a targeted version, or an option
    it does not read (``queries`` on PGD): silently running something other than what the policy says
    would make the gate's verdict a statement about a different test.
    """
    info = attack_info(name)
    if norm not in info.norms:
        return "norm", f"the attack {name} supports the norms {', '.join(info.norms)}; found {norm!r}"
    if values.get("targeted") and not info.supports_targeted:
        targetable = ", ".join(other.name for other in CATALOGUE.values() if other.supports_targeted)
        return "targeted", f"the attack {name} has no targeted version (attacks that do: {targetable})"
    for option in OPTIONS:
        ignored = option not in info.options and not (option == "targeted" and info.always_targeted)
        if ignored and values.get(option, OPTION_DEFAULTS[option]) != OPTION_DEFAULTS[option]:
            return option, _ignored_option(info, option)
    return None


OPTION_MEANINGS: dict[str, str] = {
    "steps": "Iterations",
    "restarts": "Runs from a new starting point on the samples still robust",
    "step_size": "Step length (default 2.5 * epsilon / steps)",
    "queries": "Model queries per sample of a score-based search (Square, constrained-search)",
    "targeted": "Aim at each of the most likely wrong classes in turn instead of at any wrong class",
}


def option_help(option: str) -> str:
    """The policy field's description: what it means and which attacks read it, with their defaults."""
    readers = [info for info in CATALOGUE.values() if option in info.options]
    default = {"steps": "default_steps", "queries": "default_queries"}.get(option)
    if default is None:
        used = ", ".join(info.name for info in readers)
    else:
        used = ", ".join(f"{info.name} (default {getattr(info, default)})" for info in readers)
    if option == "targeted":
        always = " and ".join(info.name for info in CATALOGUE.values() if info.always_targeted)
        return f"{OPTION_MEANINGS[option]}. Read by {used}; {always} are always targeted; the others refuse true."
    fixed = OPTION_DEFAULTS[option]
    refused = "it" if fixed is None else f"any value but {fixed}"
    return f"{OPTION_MEANINGS[option]}. Read by {used}; the other attacks refuse {refused}."


def _ignored_option(info: AttackInfo, option: str) -> str:
    readers = ", ".join(other.name for other in CATALOGUE.values() if option in other.options)
    reads = ", ".join(info.options) if info.options else "none"
    return (
        f"the attack {info.name} does not read {option} (of the attack options it reads {reads}): remove "
        f"{option}, or choose an attack that reads it ({readers})"
    )


def _cell(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, tuple):
        return ", ".join(f"`{item}`" for item in value) if value else "–"
    return str(value)


def _strength_cell(info: AttackInfo) -> str:
    if info.contains and info.strength is None:
        return f"unranked (contains {', '.join(f'`{name}`' for name in info.contains)})"
    if info.contains:
        return f"{info.strength} (contains {', '.join(f'`{name}`' for name in info.contains)})"
    if info.strength is None:
        containers = ", ".join(
            f"`{other.name}`" for other in CATALOGUE.values() if info.name in other.contains
        )
        return f"unranked (only below {containers}, which contains it)"
    return str(info.strength)


def _targeted_cell(info: AttackInfo) -> str:
    if info.always_targeted:
        return "always"
    return "optional" if info.supports_targeted else "no"


TABLE_COLUMNS = (
    "name",
    "class",
    "title",
    "paper",
    "gradients",
    "targeted",
    "default steps",
    "default queries",
    "policy options",
    "norms",
    "tasks",
    "strength",
)


def render_markdown_table() -> str:
    """The attack table of docs/attacks.md, so the docs say exactly what the catalogue says."""
    rows = ["| " + " | ".join(TABLE_COLUMNS) + " |", "| " + " | ".join(["---"] * len(TABLE_COLUMNS)) + " |"]
    for info in CATALOGUE.values():
        cells = [
            f"`{info.name}`",
            f"`{info.class_name}`",
            info.title,
            info.paper,
            "white-box" if info.needs_gradients else "black-box (scores only)",
            _targeted_cell(info),
            _cell(info.default_steps),
            _cell(info.default_queries),
            _cell(info.options),
            _cell(info.norms),
            _cell(info.tasks),
            _strength_cell(info),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"
