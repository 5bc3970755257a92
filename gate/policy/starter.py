"""The commented starter policy that ``gate policy init`` writes."""

SCHEMA_FILENAME = "gate-policy.schema.json"
"""The schema file ``gate policy init`` writes beside the policy, which the policy's first line names."""

STARTER_POLICY = """\
# yaml-language-server: $schema=gate-policy.schema.json
# A gate policy: what a model must show before it may ship.
# Validate it with:   gate policy validate {filename}
# Reference: the README's "Policy format" section. The editor schema gate-policy.schema.json was written
# beside this file by gate policy init; refresh it with: gate policy schema -o gate-policy.schema.json
version: 1
name: {name}
description: Release gate for our image classifier.

# Inherit checks from built-in or local policies; checks here override inherited ones with the same id.
extends:
  - builtin:baseline

# The space inputs live in (before any mean/std normalisation); perturbation budgets are measured here.
input:
  range: [0, 1]

confidence: 0.95   # thresholds are judged on 95% confidence bounds, not point estimates
samples: 1000      # evaluate at most this many samples (a seeded, reproducible subset)
seed: 0

checks:
  - id: clean-accuracy          # overrides the inherited check of the same id
    kind: accuracy
    min: 0.95                   # lower confidence bound of the accuracy must reach 0.95

  - id: pgd-linf
    kind: adversarial
    attack: pgd
    norm: linf
    epsilon: 8/255              # fractions are fine
    steps: 20
    min: 0.40                   # robust accuracy
    severity: warn              # report, but do not block (yet)

# Accepted, time-limited exceptions. An expired waiver stops applying; a waiver on a passing check is reported stale.
waivers: []
#  - check: pgd-linf
#    reason: Robust training lands in the next release (TICKET-123).
#    approved_by: safety-team@example.com
#    expires: 2027-01-31
"""
