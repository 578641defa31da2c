import pytest

from selfadapt.grading import contains, exact_match, grade, normalize_answer, token_f1


def test_squad_normalisation_and_metrics():
    assert normalize_answer("The  Mongol Army!") == "mongol army"
    assert exact_match("the Otrar.", "Otrar") == 1.0
    assert token_f1("town of Otrar", "Otrar") == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))
    assert token_f1("x", "") == 0.0


@pytest.mark.parametrize("response,gold,em,f1", [
    # Cases worked by hand from the official SQuAD v1.1 script's rules.
    ("the", "a", 1.0, 0.0),                   # both normalise to "": EM compares strings, F1 has no common token
    ("", "", 1.0, 0.0),
    ("U.S.", "US", 1.0, 1.0),                 # punctuation is deleted, not replaced by a space
    ("an apple a day", "Apple day", 1.0, 1.0),  # articles removed, case folded
    ("Otrar Otrar", "Otrar", 0.0, 2 / 3),     # repeated tokens count once per match: P = 1/2, R = 1
    ("the town of Otrar", "Otrar town", 0.0, 0.8),  # P = 2/3, R = 1
    ("silver", "gold", 0.0, 0.0),
])
def test_metrics_follow_the_official_squad_script(response, gold, em, f1):
    assert exact_match(response, gold) == em
    assert token_f1(response, gold) == pytest.approx(f1)


@pytest.mark.parametrize("response,gold,expected", [
    ("It was the town of Otrar.", "Otrar", 1.0),
    ("In 1945 the war ended", "4", 0.0),          # word boundaries, not substrings
    ("molten silver", "Silver", 1.0),
    ("gold", "silver", 0.0),
    ("anything", "the", 0.0),                      # a gold that normalises to nothing never matches
])
def test_containment(response, gold, expected):
    assert contains(response, gold) == expected


def test_grade_bundles_the_three_metrics():
    g = grade("It was Otrar", "Otrar")
    assert (g.exact_match, g.f1, g.contains) == (0.0, 0.5, 1.0)


def test_several_golds_take_the_best_as_the_official_script_does():
    """SQuAD v1.1's ``metric_max_over_ground_truths``: each metric is the max over the golds."""
    from selfadapt.grading import metric_max_over_ground_truths

    golds = ["1852", "in 1852"]
    g = grade("in 1852", golds)
    assert (g.exact_match, g.f1, g.contains) == (1.0, 1.0, 1.0)
    assert grade("in 1852", "1852").exact_match == 0.0  # the first gold alone: what was graded before
    assert grade("the town of Otrar", ["Otrar town", "Otrar"]).f1 == pytest.approx(0.8)
    assert metric_max_over_ground_truths(exact_match, "Otrar", ("Otrar", "Otrar")) == 1.0
    assert grade("It was Otrar", ("Otrar",)) == grade("It was Otrar", "Otrar")  # one gold: as before
    with pytest.raises(ValueError, match="no gold"):
        grade("x", [])
