"""features.uploads: upload file names and what an accepted upload replaces (no real data)."""

from __future__ import annotations

import pytest

from features.uploads import (
    MAX_NAME_CHARS,
    UploadRefused,
    active_name,
    check_name,
    replaced_and_conflicts,
    sender_slug,
)


@pytest.mark.parametrize("name", ["rennes_social.csv", "aide-alimentaire.2021-12.CSV",
                                  "2021.csv", "x" * (MAX_NAME_CHARS - 4) + ".csv"])
def test_plain_csv_names_are_kept_as_sent(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name, found", [
    ("", "an empty name"),
    (None, "an empty name"),
    ("../../etc/passwd.csv", "a path ('../../etc/passwd.csv')"),
    ("..\\..\\boot.csv", "a path"),
    ("/etc/cron.d/x.csv", "a path"),
    ("a/b.csv", "a path"),
    ("a..csv", "a path"),
    ("rennes\x00.csv", "a control character U+0000"),
    ("rennes\r\nSet-Cookie: x.csv", "a control character U+000D"),
    ("rennes\x85.csv", "a control character U+0085"),
    ("x" * (MAX_NAME_CHARS - 3) + ".csv", f"a name of {MAX_NAME_CHARS + 1} characters"),
    ("rennes.exe", "'rennes.exe'"),
    (".hidden.csv", "'.hidden.csv'"),
    ("-rf.csv", "'-rf.csv'"),
    ("rennes social.csv", "'rennes social.csv'"),
    ("rennes;rm.csv", "'rennes;rm.csv'"),
    ("rénnes.csv", "'rénnes.csv'"),
])
def test_forged_names_are_refused_with_what_was_found(name, found):
    with pytest.raises(UploadRefused) as caught:
        check_name(name)
    assert caught.value.kind == "name"
    assert found in caught.value.details["found"]
    assert "plain .csv file name" in str(caught.value)


def test_the_active_name_carries_the_sender_and_stays_a_plain_name():
    assert sender_slug("Ville de Rennes / CCAS") == "ville-de-rennes-ccas"
    assert sender_slug("***") == "sender"
    name = active_name("Ville de Rennes", "social.csv")
    assert name.startswith("upload-ville-de-rennes-") and name.endswith("-social.csv")
    assert check_name(name) == name  # what the ingest reads is itself a valid upload name
    assert active_name("Ville de Rennes", "social.csv") == name  # stable: a resend replaces


def test_two_senders_never_share_an_active_file():
    # Slugs collide, and slug-name joins collide: each pair would overwrite the other's file.
    pairs = [(("Ville A", "x.csv"), ("ville-a", "x.csv")),
             (("ville-a", "b-c.csv"), ("ville-a-b", "c.csv")),
             (("***", "x.csv"), ("+++", "x.csv"))]
    for one, other in pairs:
        assert active_name(*one) != active_name(*other), (one, other)


def _record(id_, sender, name, pairs, fixed=False):
    return {"id": id_, "sender": sender, "name": name, "pairs": [list(p) for p in pairs],
            **({"fixed": True} if fixed else {})}


FOOD_R = ("food_aid_requests", "35238")
FOOD_B = ("food_aid_requests", "35047")
CALLS_R = ("emergency_housing_calls_115", "35238")


def test_a_newer_file_replaces_the_older_it_covers_under_any_name():
    old = _record("u1", "ville-rennes", "nov.csv", {FOOD_R, FOOD_B})
    replaced, problems = replaced_and_conflicts([old], "ville-rennes", "dec.csv",
                                                {FOOD_R, FOOD_B, CALLS_R}, "dec.csv")
    assert [r["id"] for r in replaced] == ["u1"] and problems == []


def test_the_same_sender_and_name_replace_whatever_the_content():
    old = _record("u1", "ville-rennes", "social.csv", {FOOD_R, FOOD_B})
    replaced, problems = replaced_and_conflicts([old], "ville-rennes", "social.csv", {CALLS_R},
                                                "social.csv")
    assert [r["id"] for r in replaced] == ["u1"] and problems == []
    # Another sender's file of the same name is not replaced by name (disjoint: both stay).
    replaced, problems = replaced_and_conflicts([old], "ville-bruz", "social.csv", {CALLS_R},
                                                "social.csv")
    assert replaced == [] and problems == []


def test_a_partial_overlap_is_refused_naming_the_older_upload():
    old = _record("u1", "ville-rennes", "nov.csv", {FOOD_R, FOOD_B})
    replaced, problems = replaced_and_conflicts([old], "ville-rennes", "rennes_only.csv",
                                                {FOOD_R, CALLS_R}, "rennes_only.csv")
    assert replaced == []
    (problem,) = problems
    assert problem.file == "rennes_only.csv" and problem.column == "indicator"
    assert "upload u1 ('nov.csv' of ville-rennes, 2 pairs)" in problem.expected
    assert "1 of them, e.g. 'food_aid_requests' for '35238'" in problem.found


def test_a_data_directory_file_is_never_replaced_and_any_overlap_is_refused():
    fixed = _record("data directory city_indicators_rennes.csv", "the operator", "x.csv",
                    {FOOD_R}, fixed=True)
    replaced, problems = replaced_and_conflicts([fixed], "ville-rennes", "x.csv",
                                                {FOOD_R, FOOD_B}, "x.csv")
    assert replaced == [] and len(problems) == 1
    assert "the operator's file" in problems[0].expected
    assert replaced_and_conflicts([fixed], "ville-rennes", "y.csv", {CALLS_R}, "y.csv") \
        == ([], [])
