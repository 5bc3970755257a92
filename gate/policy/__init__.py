"""The policy format (pydantic models) and its loader."""

from gate.policy.checks import ALL_CHECK_SPECS, AnyCheckSpec, CheckSpec, kind_of
from gate.policy.loader import (
    Origin,
    PolicyFile,
    PolicyValidationError,
    Problem,
    ResolvedPolicy,
    builtin_policy_names,
    load_policy,
    read_policy_file,
)
from gate.policy.model import InputSpace, Policy, PolicyDocument, Waiver

__all__ = [
    "ALL_CHECK_SPECS",
    "AnyCheckSpec",
    "CheckSpec",
    "InputSpace",
    "Origin",
    "Policy",
    "PolicyDocument",
    "PolicyFile",
    "PolicyValidationError",
    "Problem",
    "ResolvedPolicy",
    "Waiver",
    "builtin_policy_names",
    "kind_of",
    "load_policy",
    "read_policy_file",
]
