"""The cluster core: Dynamo's concepts as pure values and small pure state machines.

No module in this package performs I/O, reads a clock, or draws randomness on its own; time is
passed in as numbers and randomness as a caller's ``RandomSource``. See docs/cluster.md.

Modules: ``hashing`` (tokens), ``ring`` (placement, preference lists, transfer plans),
``versions`` (dotted version vectors and sibling sets), ``quorum`` (levels, replica plans,
tracker), ``merkle`` (anti-entropy trees), ``failure`` (phi accrual), ``membership`` (gossip),
``sim`` (seeded gossip simulation), ``codec`` (framing shared by the encodings).
"""
