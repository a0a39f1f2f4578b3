"""Where feeds go: the node with the most pose capacity left, among those carrying the feed's labels
(placement alone, on node descriptions as Ray reports them; the clusters are in test_cluster.py)."""

from __future__ import annotations

import pytest

from cadence.cluster.counting.placement import NodeInfo, NoNodeError, choose_node

RATE = 20.0  # frames a second one CPU poses


def place(nodes: list[NodeInfo], feeds: int, needs: dict | None = None, labels=None) -> dict[str, int]:
    """Place ``feeds`` feeds of 30 frames/s one after another, as the driver does; feeds per node."""
    needs = {k: list(v) for k, v in (needs or {}).items()}
    for k in range(feeds):
        node = choose_node(nodes, needs, RATE, labels, f"feed{k}")
        needs.setdefault(node.id, []).append(30.0)
    return {node.id: len(needs.get(node.id, ())) for node in nodes}


def test_two_hundred_feeds_spread_evenly_over_equal_nodes():
    nodes = [NodeInfo(f"n{k}", 8) for k in range(3)]
    assert sorted(place(nodes, 200).values()) == [66, 67, 67]


def test_a_node_with_twice_the_cpus_takes_twice_the_feeds_and_one_without_cpus_none():
    nodes = [NodeInfo("big", 8), NodeInfo("small", 4), NodeInfo("head", 0)]
    assert place(nodes, 30) == {"big": 20, "small": 10, "head": 0}


def test_a_node_that_joins_takes_the_new_feeds_until_it_is_as_loaded_as_the_others():
    old = [NodeInfo("a", 4), NodeInfo("b", 4)]
    before = {"a": [30.0] * 5, "b": [30.0] * 5}
    joined = old + [NodeInfo("c", 4)]
    assert place(joined, 5, before) == {"a": 5, "b": 5, "c": 5}


def test_a_feed_known_to_need_more_counts_for_more():
    nodes = [NodeInfo("a", 4), NodeInfo("b", 4)]
    # a holds one 60 fps feed, b two 25 fps feeds: b has more left
    assert choose_node(nodes, {"a": [60.0], "b": [25.0, 25.0]}, RATE).id == "b"


def test_labels_choose_among_the_nodes_carrying_them_and_name_what_is_missing():
    nodes = [NodeInfo("a", 4, {"site": "north"}), NodeInfo("b", 4, {"site": "south"}), NodeInfo("c", 4)]
    assert place(nodes, 4, labels={"site": "south"}) == {"a": 0, "b": 4, "c": 0}
    with pytest.raises(NoNodeError, match=r"cam-7: no live node with CPUs carries the labels site=east") as e:
        choose_node(nodes, {}, RATE, {"site": "east"}, "cam-7")
    assert "--labels site=east" in str(e.value) and "'site': 'north'" in str(e.value)
    with pytest.raises(NoNodeError, match="no live node has CPUs"):
        choose_node([NodeInfo("head", 0)], {}, RATE, None, "cam-8")
