"""How the next trial is chosen and when one stops early: samplers (seeded per trial) and
pruners (the divergence rule first, then an optional early-stopping rule)."""
