"""The annotator's "My work" page (issue 18, item 3): own labels only, as they were shown, filters, gold feedback.

Labels are saved directly (tests/test_stats.label) with the side shown left, the duration and the time a test
needs; the labeling page's own path to them is tested in tests/test_browser_my_work.py.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from annotate.models import Annotation, Campaign, Item, Pair
from annotate.services.assignments import assignment_next
from annotate.services.campaigns import campaign_update, membership_set
from tests import factories
from tests.test_campaign_pages import form_data, settings_url
from tests.test_stats import label

pytestmark = pytest.mark.django_db


@pytest.fixture
def as_user(client):
    def login(username: str):
        client.force_login(get_user_model().objects.get(username=username))
        return client

    return login


def my_work(client, campaign: Campaign, **query) -> tuple[int, str]:
    response = client.get(reverse("my-work-page", args=[campaign.pk]), query)
    return response.status_code, response.content.decode()


def pairs_with_prompts(campaign: Campaign, prompts: list[str], *, gold: int = 0) -> list[Pair]:
    """One pair per prompt, answers "<prompt> A" / "<prompt> B"; the first `gold` are gold with `b` worse."""
    pairs = factories.make_pairs(campaign, len(prompts), gold=gold)
    for pair, prompt in zip(pairs, prompts, strict=True):
        Item.objects.filter(pk=pair.item_id).update(prompt=prompt)
        for side in ("a", "b"):
            response = getattr(pair, side)
            response.text = f"{prompt} {side.upper()}"
            response.save()
    return pairs


def labeled_at(annotation: Annotation, when: str) -> Annotation:
    """Move a label to a given moment (UTC), as if it had been given then."""
    moment = datetime.fromisoformat(when).replace(tzinfo=UTC)
    Annotation.objects.filter(pk=annotation.pk).update(created_at=moment)
    return annotation


def rows(page: str) -> list[str]:
    """The label ids of the page's rows, in order."""
    return [chunk.split('"', 1)[0] for chunk in page.split('data-label="')[1:]]


# Whose labels --------------------------------------------------------------------------------------------


def test_an_annotator_sees_their_own_labels_newest_first_and_never_anothers(as_user, campaign):
    first, second = pairs_with_prompts(campaign, ["Apples?", "Bananas?"])
    older = labeled_at(label(first, "ann1", "a", 2, ms=4000), "2026-03-01 09:00")
    newer = labeled_at(label(second, "ann1", "neither", ms=2000), "2026-03-02 09:00")
    theirs = label(first, "ann2", "b", 4)
    Annotation.objects.filter(pk=theirs.pk).update(rationale="ann2 thinks otherwise")

    status, page = my_work(as_user("ann1"), campaign)
    assert status == 200
    assert rows(page) == [str(newer.pk), str(older.pk)]
    assert "ann2 thinks otherwise" not in page and f'data-label="{theirs.pk}"' not in page
    assert '<dd data-summary="labels">2</dd>' in page

    status, page = my_work(as_user("ann2"), campaign)
    assert rows(page) == [str(theirs.pk)] and "ann2 thinks otherwise" in page


def test_leads_and_researchers_are_refused_and_strangers_get_404(as_user, campaign):
    label(factories.make_pairs(campaign, 1)[0], "ann1", "a", 1)
    for username in ("lead", "res"):
        status, page = my_work(as_user(username), campaign)
        assert status == 403 and "needs the role annotator" in page
    status, page = my_work(as_user("otherlead"), campaign)
    assert status == 404 and "Demo" not in page.split("<main", 1)[1]


def test_an_annotator_of_another_campaign_gets_404(as_user, campaign, make_user):
    other = Campaign.objects.get(name="Other")
    make_user("ann-other")
    membership_set(campaign=other, username="ann-other", role="annotator")
    assert my_work(as_user("ann-other"), campaign)[0] == 404
    assert my_work(as_user("ann-other"), other)[0] == 200


def test_the_campaign_list_and_the_labeling_page_link_to_it(as_user, campaign):
    factories.make_pairs(campaign, 1)
    client = as_user("ann1")
    url = reverse("my-work-page", args=[campaign.pk])
    assert f'href="{url}"' in client.get(reverse("campaign-list")).content.decode()
    label_page = client.get(reverse("label-page", args=[campaign.pk])).content.decode()
    assert f'href="{url}"' in label_page
    assert "<kbd>?</kbd> every key" in label_page
    lead_list = as_user("lead").get(reverse("campaign-list")).content.decode()
    assert f'href="{url}"' not in lead_list


# What a row shows ----------------------------------------------------------------------------------------


def test_a_row_shows_the_answers_in_the_order_seen_and_the_pick_in_screen_terms(as_user, campaign):
    (pair,) = pairs_with_prompts(campaign, ["Cherries?"])
    campaign_update(campaign=campaign, strength_labels=["tiny", "small", "big", "huge"])
    given = label(pair, "ann1", "b", 3, left="b", ms=65_000)
    Annotation.objects.filter(pk=given.pk).update(hallucination_types=["count"], rationale="Too many cherries.")

    page = my_work(as_user("ann1"), campaign)[1]
    # b was shown on the left: its text comes first, and "b" reads as the left one.
    assert page.index("Cherries? B") < page.index("Cherries? A")
    assert '<strong data-answer="left">Left more hallucinated</strong>' in page
    assert 'strength <span data-strength="3">3 · big</span>' in page
    assert "took 1 min 05 s" in page
    assert "Too many cherries." in page and '<span class="badge">count</span>' in page


def test_own_spans_are_highlighted_in_the_answer_they_mark_whichever_side_it_was_on(as_user, campaign):
    (pair,) = pairs_with_prompts(campaign, ["Plums?"])  # answers "Plums? A" and "Plums? B"
    given = label(pair, "ann1", "b", 2, left="b")
    spans = [{"response": "b", "start": 0, "end": 5, "type": "object"}]
    Annotation.objects.filter(pk=given.pk).update(spans=spans)
    page = my_work(as_user("ann1"), campaign)[1]
    left = page.split("Left answer", 1)[1].split("</article>", 1)[0]
    right = page.split("Right answer", 1)[1].split("</article>", 1)[0]
    assert '<mark class="span-mark" title="object">Plums</mark>? B' in left
    assert "<mark" not in right and "Plums? A" in right


def test_a_changed_label_shows_as_changed_with_its_latest_answer(as_user, campaign):
    (pair,) = pairs_with_prompts(campaign, ["Pears?"])
    given = labeled_at(label(pair, "ann1", "a", 2), "2026-03-01 09:00")
    edited = datetime(2026, 3, 1, 9, 10, tzinfo=UTC)
    changed = {"more_hallucinated": "neither", "strength": None, "version": 2, "edited_at": edited}
    Annotation.objects.filter(pk=given.pk).update(**changed)
    page = my_work(as_user("ann1"), campaign)[1]
    assert '<span data-edited="2">changed 2026-03-01 09:10</span>' in page
    assert '<strong data-answer="neither">Neither</strong>' in page and "data-strength" not in page


def test_user_text_is_escaped(as_user, campaign):
    (pair,) = pairs_with_prompts(campaign, ["<script>alert('prompt')</script>"])
    given = label(pair, "ann1", "a", 1)
    Annotation.objects.filter(pk=given.pk).update(rationale="<img src=x onerror=alert(1)>")
    page = my_work(as_user("ann1"), campaign)[1]
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&#x27;prompt&#x27;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_the_summary_counts_time_over_labels_whose_time_was_recorded(as_user, campaign):
    pairs = factories.make_pairs(campaign, 4)
    for pair, ms in zip(pairs, (1000, 3000, None, 8000), strict=True):
        label(pair, "ann1", "a", 1, ms=ms)
    page = my_work(as_user("ann1"), campaign)[1]
    assert '<dd data-summary="labels">4</dd>' in page
    assert '<dd data-summary="total">12.0 s</dd>' in page
    assert '<dd data-summary="median">3.0 s</dd>' in page
    assert "Times are over the 3 labels whose time was recorded." in page
    assert "took —" in page


def test_no_labels_yet_is_said_in_words(as_user, campaign):
    status, page = my_work(as_user("ann1"), campaign)
    assert status == 200 and "No labels yet" in page and '<dd data-summary="total">—</dd>' in page


# Filters and pages -----------------------------------------------------------------------------------------


def test_the_answer_filter_speaks_in_the_sides_seen(as_user, campaign):
    pairs = factories.make_pairs(campaign, 4)
    left_a = label(pairs[0], "ann1", "a", 1, left="a")  # a shown left, picked: left
    left_b = label(pairs[1], "ann1", "b", 1, left="b")  # b shown left, picked: left
    right = label(pairs[2], "ann1", "a", 1, left="b")  # a shown right, picked: right
    both = label(pairs[3], "ann1", "both")
    client = as_user("ann1")
    assert sorted(rows(my_work(client, campaign, answer="left")[1])) == sorted([str(left_a.pk), str(left_b.pk)])
    assert rows(my_work(client, campaign, answer="right")[1]) == [str(right.pk)]
    assert rows(my_work(client, campaign, answer="both")[1]) == [str(both.pk)]
    page = my_work(client, campaign, answer="neither")[1]
    assert rows(page) == [] and "No label matches this filter" in page
    assert '<dd data-summary="labels">0</dd>' in page and "Labels matching" in page


def test_the_date_range_is_inclusive_and_a_reversed_range_is_refused_on_the_form(as_user, campaign):
    pairs = factories.make_pairs(campaign, 3)
    days = ("2026-03-01 23:59", "2026-03-02 00:00", "2026-03-03 12:00")
    given = [labeled_at(label(pair, "ann1", "a", 1), day) for pair, day in zip(pairs, days, strict=True)]
    client = as_user("ann1")
    page = my_work(client, campaign, labeled_from="2026-03-02", labeled_to="2026-03-03")[1]
    assert rows(page) == [str(given[2].pk), str(given[1].pk)]
    assert rows(my_work(client, campaign, labeled_to="2026-03-01")[1]) == [str(given[0].pk)]

    status, page = my_work(client, campaign, labeled_from="2026-03-03", labeled_to="2026-03-01")
    assert status == 400
    assert "The range ends (2026-03-01) before it starts (2026-03-03)." in page
    assert 'value="2026-03-03"' in page, "what was typed stays in the form"
    assert rows(page) == []
    status, page = my_work(client, campaign, labeled_from="March")
    assert status == 400 and "Enter a valid date." in page


def test_pages_of_25_keep_the_filter(as_user, campaign):
    pairs = factories.make_pairs(campaign, 30)
    given = [label(pair, "ann1", "neither") for pair in pairs]
    client = as_user("ann1")
    first = my_work(client, campaign, answer="neither")[1]
    assert len(rows(first)) == 25 and rows(first)[0] == str(given[-1].pk)
    assert "?answer=neither&amp;page=2" in first and "Page 1 of 2" in first
    second = my_work(client, campaign, answer="neither", page="2")[1]
    assert rows(second) == [str(annotation.pk) for annotation in reversed(given[:5])]
    assert '<dd data-summary="labels">30</dd>' in second


def test_the_page_costs_a_fixed_number_of_queries(as_user, campaign, django_assert_max_num_queries):
    campaign_update(campaign=campaign, gold_feedback=True)
    pairs = factories.make_pairs(campaign, 40, gold=10)
    for index, pair in enumerate(pairs):
        label(pair, "ann1", "a" if index % 2 else "b", 2, left="b" if index % 3 else "a", ms=1000 + index)
    client = as_user("ann1")
    my_work(client, campaign)
    # session, user, campaign with role, page count, the page's labels with pairs and answers, the summary
    with django_assert_max_num_queries(6):
        status, page = my_work(client, campaign)
    assert status == 200 and len(rows(page)) == 25


# Gold feedback ----------------------------------------------------------------------------------------------


@pytest.fixture
def gold_work(campaign):
    """ann1 answered two gold pairs (one right, one wrong with b shown left) and one plain pair; a third gold
    pair is leased to ann1 but not answered, and ann2 answered it."""
    pairs = pairs_with_prompts(campaign, ["Gold right?", "Gold missed?", "Gold unanswered?", "Plain?"], gold=3)
    right = label(pairs[0], "ann1", "b", 2)  # gold answer is b
    missed = label(pairs[1], "ann1", "a", 2, left="b")  # said a (shown right); b, shown left, is the gold answer
    label(pairs[2], "ann2", "b", 2)
    plain = label(pairs[3], "ann1", "a", 1)
    Pair.objects.filter(pk=pairs[2].pk).update(priority=100)
    lease = assignment_next(campaign=campaign, annotator=get_user_model().objects.get(username="ann1"))
    assert lease.assignment.pair_id == pairs[2].pk
    return {"right": right, "missed": missed, "plain": plain}


def test_without_gold_feedback_nothing_tells_a_gold_pair_apart(as_user, campaign, gold_work):
    status, page = my_work(as_user("ann1"), campaign, gold="missed")
    assert status == 200
    assert len(rows(page)) == 3, "the gold filter does not exist here, so it filters nothing"
    assert "data-gold" not in page and "Gold pair" not in page and 'name="gold"' not in page
    assert 'data-summary="gold"' not in page


def test_with_gold_feedback_answered_gold_pairs_say_right_or_the_right_answer(as_user, campaign, gold_work):
    campaign_update(campaign=campaign, gold_feedback=True)
    client = as_user("ann1")
    page = my_work(client, campaign)[1]
    assert len(rows(page)) == 3
    assert page.count("data-gold=") == 2
    assert page.count('data-gold="right"') == 1 and page.count('data-gold="missed"') == 1
    missed_row = page.split(f'data-label="{gold_work["missed"].pk}"', 1)[1].split("</li>", 1)[0]
    assert "The right answer is <strong>Left more hallucinated</strong>" in missed_row
    assert '<dd data-summary="gold">1 of 2</dd>' in page
    # The gold pair on screen now, not answered yet, is nowhere: not its prompt, not its answer.
    assert "Gold unanswered?" not in page

    assert rows(my_work(client, campaign, gold="missed")[1]) == [str(gold_work["missed"].pk)]
    only = rows(my_work(client, campaign, gold="only")[1])
    assert sorted(only) == sorted([str(gold_work["right"].pk), str(gold_work["missed"].pk)])
    status, page = my_work(client, campaign, gold="all")
    assert status == 400 and "Select a valid choice." in page


# The setting -----------------------------------------------------------------------------------------------


def test_gold_feedback_is_off_by_default_and_set_over_the_api(campaign, api_as):
    url = reverse("api-campaign", args=[campaign.pk])
    assert api_as("lead").get(url).json()["gold_feedback"] is False
    response = api_as("lead").patch(url, {"gold_feedback": True}, format="json")
    assert response.status_code == 200 and response.json()["gold_feedback"] is True
    campaign.refresh_from_db()
    assert campaign.gold_feedback is True
    assert api_as("ann1").patch(url, {"gold_feedback": False}, format="json").status_code == 403
    response = api_as("lead").patch(url, {"gold_feedback": "sometimes"}, format="json")
    assert response.status_code == 400 and "gold_feedback" in response.json()["fields"]
    campaign.refresh_from_db()
    assert campaign.gold_feedback is True


def test_gold_feedback_is_on_the_settings_form(as_user, campaign):
    client = as_user("lead")
    assert 'name="gold_feedback"' in client.get(settings_url(campaign)).content.decode()
    response = client.post(settings_url(campaign), form_data(campaign, gold_feedback="on"))
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.gold_feedback is True
    client.post(settings_url(campaign), form_data(campaign, gold_feedback=""))
    campaign.refresh_from_db()
    assert campaign.gold_feedback is False
