"""Deterministic simulation of a respkv cluster (issue #8): several unchanged nodes in one
process, on trio's MockClock, over a simulated network and fault-injecting file systems, all
driven by one seed. See docs/simulation.md; entry points: ``respkv.sim.cluster.run_plan``,
``respkv.sim.runner.run_campaign`` and the ``respkv-sim`` command (``respkv.sim.runner.main``).
"""
