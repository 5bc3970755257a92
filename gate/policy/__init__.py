"""The policy format (pydantic models) and its loader."""

from gate.policy.loader import (
    Origin,
    PolicyFile,
    PolicyRoots,
    PolicyValidationError,
    Problem,
    ResolvedPolicy,
    allowed_policy_roots,
    builtin_policy_names,
    load_policy,
    read_policy_file,
)
from gate.policy.model import InputSpace, Policy, PolicyDocument, Waiver
from gate.policy.specs import ALL_CHECK_SPECS, AnyCheckSpec, CheckSpec, kind_of

__all__ = [
    "ALL_CHECK_SPECS",
    "AnyCheckSpec",
    "CheckSpec",
    "InputSpace",
    "Origin",
    "Policy",
    "PolicyDocument",
    "PolicyFile",
    "PolicyRoots",
    "PolicyValidationError",
    "Problem",
    "ResolvedPolicy",
    "Waiver",
    "allowed_policy_roots",
    "builtin_policy_names",
    "kind_of",
    "load_policy",
    "read_policy_file",
]
