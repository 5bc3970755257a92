"""The check registry and the policy format define the same kinds: one source of truth, no orphans."""

from __future__ import annotations

import typing

from gate.checks import REGISTRY, CheckKind
from gate.policy.specs import ALL_CHECK_SPECS, AnyCheckSpec, kind_of


def test_registry_covers_exactly_the_kinds_the_policy_format_defines() -> None:
    assert set(REGISTRY) == {kind_of(spec) for spec in ALL_CHECK_SPECS}


def test_each_implementation_is_registered_under_its_own_spec_kind() -> None:
    for kind, implementation in REGISTRY.items():
        assert isinstance(implementation, CheckKind)
        assert kind_of(implementation.spec_type) == kind
        assert implementation.spec_type in ALL_CHECK_SPECS


def test_the_discriminated_union_lists_every_spec_class() -> None:
    union, *_ = typing.get_args(AnyCheckSpec)
    assert set(typing.get_args(union)) == set(ALL_CHECK_SPECS)
    kinds = [kind_of(spec) for spec in ALL_CHECK_SPECS]
    assert len(kinds) == len(set(kinds))
