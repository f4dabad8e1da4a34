"""A pure, seeded simulation of gossip dissemination (Demers et al. 1987, *Epidemic Algorithms
for Replicated Database Maintenance*; Karp et al. 2000 for push-pull's ``log3 n + O(log log n)``
rounds).

Synchronous rounds: at the start of a round every node bumps its own heartbeat, then every node
picks one random peer it knows (:func:`~respkv.cluster.membership.choose_gossip_peer`) and runs
the SYN/ACK/ACK2 exchange against the peers' start-of-round states. Each node ends the round
holding the merge of its own state and everything its exchanges (initiated or received) gave it.

Three scenarios, each returning the number of rounds until done:

* :func:`rounds_to_spread` -- everyone already knows everyone; one node changes its row (a
  status change); rounds until every node holds that row.
* :func:`rounds_to_converge_from_seeds` -- a cold start: each node knows only itself and the seed
  nodes; rounds until every node knows every node.
* :func:`rounds_to_converge_from_neighbour` -- a sparse cold start: node ``i`` knows only node
  ``i + 1``; rounds until every node knows every node.

The randomness is the ``RandomSource`` the caller passes (``random.Random(seed)`` in tests and
bench); nothing here reads a clock or a global generator.
"""

from __future__ import annotations

from collections.abc import Callable

from respkv.cluster.membership import (
    Membership,
    NodeStatus,
    RandomSource,
    choose_gossip_peer,
    handle_ack,
    handle_ack2,
    handle_syn,
    heartbeat,
    make_syn,
    merge,
    new_node_state,
    set_status,
)


def node_ids(n: int) -> list[str]:
    return [f"node{i:04d}" for i in range(n)]


def gossip_round(states: dict[str, Membership], rng: RandomSource) -> dict[str, Membership]:
    """One synchronous round; returns the new states (the input is not modified)."""
    start = {nid: heartbeat(m, nid) for nid, m in states.items()}
    result = dict(start)
    for initiator in sorted(start):
        peer = choose_gossip_peer(start[initiator], initiator, rng)
        if peer is None or peer not in start:
            continue
        syn = make_syn(start[initiator], initiator)
        ack = handle_syn(start[peer], peer, syn)
        initiator_after, ack2 = handle_ack(start[initiator], initiator, ack)
        peer_after = handle_ack2(start[peer], ack2)
        result[initiator] = merge(result[initiator], initiator_after)
        result[peer] = merge(result[peer], peer_after)
    return result


def run_until(
    states: dict[str, Membership],
    rng: RandomSource,
    done: Callable[[dict[str, Membership]], bool],
    max_rounds: int = 1000,
) -> int:
    """Rounds of :func:`gossip_round` until ``done(states)``; ``max_rounds + 1`` if never."""
    for r in range(1, max_rounds + 1):
        states = gossip_round(states, rng)
        if done(states):
            return r
    return max_rounds + 1


def full_membership(n: int) -> dict[str, Membership]:
    ids = node_ids(n)
    everyone = Membership(
        new_node_state(nid, 1, f"10.0.0.{i}:7000", status=NodeStatus.NORMAL)
        for i, nid in enumerate(ids)
    )
    return {nid: everyone for nid in ids}


def rounds_to_spread(n: int, rng: RandomSource, max_rounds: int = 1000) -> int:
    states = full_membership(n)
    origin = node_ids(n)[0]
    states[origin] = set_status(states[origin], origin, NodeStatus.LEAVING)

    def done(s: dict[str, Membership]) -> bool:
        return all(m[origin].status is NodeStatus.LEAVING for m in s.values())

    return run_until(states, rng, done, max_rounds)


def rounds_to_converge_from_seeds(
    n: int, rng: RandomSource, seeds: int = 1, max_rounds: int = 1000
) -> int:
    ids = node_ids(n)
    rows = {
        nid: new_node_state(nid, 1, f"10.0.0.{i}:7000", status=NodeStatus.NORMAL)
        for i, nid in enumerate(ids)
    }
    seed_rows = [rows[nid] for nid in ids[:seeds]]
    states = {nid: Membership([rows[nid], *seed_rows]) for nid in ids}

    def done(s: dict[str, Membership]) -> bool:
        return all(len(m) == n for m in s.values())

    return run_until(states, rng, done, max_rounds)


def rounds_to_converge_from_neighbour(n: int, rng: RandomSource, max_rounds: int = 1000) -> int:
    """A sparse cold start: node ``i`` knows only itself and node ``i + 1`` (mod n), so
    knowledge must travel through many peers; rounds until every node knows every node."""
    ids = node_ids(n)
    rows = [
        new_node_state(nid, 1, f"10.0.0.{i}:7000", status=NodeStatus.NORMAL)
        for i, nid in enumerate(ids)
    ]
    states = {ids[i]: Membership([rows[i], rows[(i + 1) % n]]) for i in range(n)}

    def done(s: dict[str, Membership]) -> bool:
        return all(len(m) == n for m in s.values())

    return run_until(states, rng, done, max_rounds)
