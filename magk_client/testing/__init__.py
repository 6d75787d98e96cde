"""Test support: the reference MAGK backend and a fault-injecting TCP proxy (needs the ``server`` extra)."""
