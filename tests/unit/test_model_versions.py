"""gbm 1.3 is a new version: 1.2 keeps its meaning, and each ensemble pins its own gbm."""

from __future__ import annotations

from models.registry import Registry


def test_gbm_1_2_keeps_its_trees_and_1_3_has_fewer_smaller_ones():
    registry = Registry()
    old, new = registry.create("gbm@1.2"), registry.create("gbm@1.3")
    assert (old.max_iter, old.learning_rate, old.max_leaf_nodes) == (80, 0.08, 15)
    assert (new.max_iter, new.learning_rate, new.max_leaf_nodes) == (40, 0.16, 7)
    # Everything else (features, leading signals, windows) is 1.2's.
    same = {k: v for k, v in new.get_params().items()
            if k not in ("max_iter", "learning_rate", "max_leaf_nodes")}
    assert same == {k: v for k, v in old.get_params().items() if k in same}


def test_each_ensemble_version_pins_its_gbm():
    registry = Registry()
    assert registry.get("ensemble@1.3").params["member_versions"]["gbm"] == "1.2"
    assert registry.get("ensemble@1.4").params["member_versions"]["gbm"] == "1.3"
    # 1.4 is 1.3 with gbm 1.3, nothing else.
    one_three = dict(registry.get("ensemble@1.3").params)
    one_four = dict(registry.get("ensemble@1.4").params)
    one_three.pop("member_versions"), one_four.pop("member_versions")
    assert one_three == one_four
    assert registry.get("ensemble@1.4").params["member_versions"]["growth"] == "1.0"
