"""The labeling hot path as two PL/pgSQL functions, so a lease and a label each cost one round trip.

`rewardlab_lease` and `rewardlab_submit` hold the rules of leasing and labeling (DESIGN.md, "The loop",
step 1; API.md, "Labels"); `annotate.services.assignments` and `annotate.services.annotations` call them
and turn their outcomes into errors. Inside a function each statement takes a fresh snapshot (READ
COMMITTED), so "count the pair's load again after its row lock" still sees every lease committed by
whoever held the lock before, as it did when the statements came from Python one by one.
"""

from django.db import migrations

LEASE = r"""
CREATE OR REPLACE FUNCTION rewardlab_lease(
    p_user integer, p_campaign bigint, p_roles text[], p_gold_draw double precision, p_now timestamptz,
    p_image_url text, p_max_candidates integer
) RETURNS TABLE (outcome text, detail text, assignment_id bigint, body text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_campaign record;
    v_assignment bigint;
    v_outcome text := 'resumed';
    v_pair record;
    v_gold boolean;
    v_rejected bigint[];
    v_left text;
    v_shown_a integer;
    v_shown_b integer;
BEGIN
    SELECT c.status, c.show_facts, c.lease_seconds, p_gold_draw < c.gold_share AS gold_first, m.role, m.paused_at, m.paused_reason,
           coalesce((SELECT u.is_staff FROM auth_user u WHERE u.id = p_user), false) AS is_staff
      INTO v_campaign
      FROM annotate_campaign c
      LEFT JOIN annotate_membership m ON m.campaign_id = c.id AND m.user_id = p_user
     WHERE c.id = p_campaign;
    IF NOT FOUND OR NOT (v_campaign.is_staff OR coalesce(v_campaign.role = ANY (p_roles), false)) THEN
        RETURN QUERY SELECT 'refused', v_campaign.role::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    IF v_campaign.status <> 'active' THEN
        RETURN QUERY SELECT 'inactive', v_campaign.status::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    IF v_campaign.paused_at IS NOT NULL THEN
        RETURN QUERY SELECT 'paused', v_campaign.paused_reason, NULL::bigint, NULL::text;
        RETURN;
    END IF;

    -- One annotator's requests run one at a time, so a double click never opens two leases.
    PERFORM 1 FROM auth_user WHERE id = p_user FOR UPDATE;
    SELECT a.id INTO v_assignment
      FROM annotate_assignment a JOIN annotate_pair p ON p.id = a.pair_id
     WHERE p.campaign_id = p_campaign AND a.annotator_id = p_user AND a.status = 'leased' AND a.expires_at > p_now
     ORDER BY a.leased_at LIMIT 1;

    IF v_assignment IS NULL THEN
        FOREACH v_gold IN ARRAY ARRAY[v_campaign.gold_first, NOT v_campaign.gold_first] LOOP
            v_rejected := '{}';
            FOR i IN 1..p_max_candidates LOOP
                -- The best pair this annotator has not seen; a non-gold one only while the snapshot shows room.
                IF v_gold THEN
                    SELECT p.id, p.needed_labels, p.surfaced INTO v_pair
                      FROM annotate_pair p
                     WHERE p.campaign_id = p_campaign AND p.status = 'open' AND p.gold_answer <> ''
                       AND NOT EXISTS (SELECT 1 FROM annotate_assignment s WHERE s.pair_id = p.id AND s.annotator_id = p_user)
                       AND p.id <> ALL (v_rejected)
                     ORDER BY p.priority DESC, p.id
                     LIMIT 1 FOR UPDATE OF p SKIP LOCKED;
                ELSE
                    SELECT p.id, p.needed_labels, p.surfaced INTO v_pair
                      FROM annotate_pair p
                     WHERE p.campaign_id = p_campaign AND p.status = 'open' AND p.gold_answer = ''
                       AND NOT EXISTS (SELECT 1 FROM annotate_assignment s WHERE s.pair_id = p.id AND s.annotator_id = p_user)
                       AND p.labels_count + (
                           SELECT count(*) FROM annotate_assignment l
                            WHERE l.pair_id = p.id AND l.status = 'leased' AND l.expires_at > p_now
                       ) < p.needed_labels
                       AND p.id <> ALL (v_rejected)
                     ORDER BY p.priority DESC, p.id
                     LIMIT 1 FOR UPDATE OF p SKIP LOCKED;
                END IF;
                EXIT WHEN NOT FOUND;
                -- Gold pairs have no overlap cap; the others are counted again on fresh data, under the lock.
                IF v_gold OR rewardlab_pair_load(v_pair.id, p_now, NULL) < v_pair.needed_labels THEN
                    -- Suspected noise alternates the side shown left, so its re-annotators see both orders.
                    v_left := CASE WHEN random() < 0.5 THEN 'a' ELSE 'b' END;
                    IF v_pair.surfaced ? 'suspected_noise' THEN
                        SELECT count(*) FILTER (WHERE l."left" = 'a'), count(*) FILTER (WHERE l."left" = 'b')
                          INTO v_shown_a, v_shown_b
                          FROM annotate_assignment l WHERE l.pair_id = v_pair.id;
                        IF v_shown_a < v_shown_b THEN
                            v_left := 'a';
                        ELSIF v_shown_b < v_shown_a THEN
                            v_left := 'b';
                        END IF;
                    END IF;
                    INSERT INTO annotate_assignment (pair_id, annotator_id, "left", status, leased_at, expires_at)
                    VALUES (v_pair.id, p_user, v_left, 'leased', p_now,
                            p_now + make_interval(secs => v_campaign.lease_seconds))
                    RETURNING id INTO v_assignment;
                    v_outcome := 'leased';
                    EXIT;
                END IF;
                v_rejected := v_rejected || v_pair.id;
            END LOOP;
            EXIT WHEN v_assignment IS NOT NULL;
        END LOOP;
    END IF;

    IF v_assignment IS NULL THEN
        RETURN QUERY SELECT 'none', NULL::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    -- The body is the API's next-pair answer; facts only when the campaign shows them (API.md).
    RETURN QUERY
    SELECT v_outcome, NULL::text, a.id, json_build_object(
        'assignment', a.id,
        'expires_at', to_char(a.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'left', a."left",
        'pair', json_build_object(
            'id', p.id,
            'item', CASE WHEN v_campaign.show_facts THEN
                json_build_object('id', i.id, 'external_id', i.external_id,
                                  'image_url', replace(p_image_url, '{sha256}', im.sha256),
                                  'prompt', i.prompt, 'facts', i.facts)
            ELSE
                json_build_object('id', i.id, 'external_id', i.external_id,
                                  'image_url', replace(p_image_url, '{sha256}', im.sha256),
                                  'prompt', i.prompt)
            END,
            'a', json_build_object('id', ra.external_id, 'text', ra.text, 'model', ra.model),
            'b', json_build_object('id', rb.external_id, 'text', rb.text, 'model', rb.model)
        )
    )::text
      FROM annotate_assignment a
      JOIN annotate_pair p ON p.id = a.pair_id
      JOIN annotate_item i ON i.id = p.item_id
      JOIN annotate_image im ON im.id = i.image_id
      JOIN annotate_response ra ON ra.id = p.a_id
      JOIN annotate_response rb ON rb.id = p.b_id
     WHERE a.id = v_assignment;
END
$$;
"""

SUBMIT = r"""
CREATE OR REPLACE FUNCTION rewardlab_submit(
    p_user integer, p_assignment bigint, p_choice text, p_strength integer, p_types jsonb, p_spans jsonb,
    p_rationale text, p_duration integer, p_now timestamptz, p_consensus_every interval, p_consensus_lost interval,
    p_resend_before timestamptz
) RETURNS TABLE (
    outcome text, detail text, body text, campaign_id bigint, is_gold boolean, retrain_due boolean,
    consensus_claimed boolean
)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v record;
    v_errors jsonb := '{}';
    v_span jsonb;
    v_length integer;
    v_annotation bigint;
    v_outcome text := 'existing';
    v_due boolean := false;
    v_claimed boolean := false;
BEGIN
    SELECT a.id, a.status, a."left", a.expires_at, a.pair_id, p.campaign_id, p.gold_answer <> '' AS is_gold,
           p.needed_labels, c.strength_scale, c.rationale_required,
           char_length(ra.text) AS length_a, char_length(rb.text) AS length_b
      INTO v
      FROM annotate_assignment a
      JOIN annotate_pair p ON p.id = a.pair_id
      JOIN annotate_campaign c ON c.id = p.campaign_id
      JOIN annotate_response ra ON ra.id = p.a_id
      JOIN annotate_response rb ON rb.id = p.b_id
     WHERE a.id = p_assignment AND a.annotator_id = p_user
       FOR UPDATE OF a;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found', NULL::text, NULL::text, NULL::bigint, NULL::boolean, false, false;
        RETURN;
    END IF;
    IF v.status = 'skipped' THEN
        RETURN QUERY SELECT 'skipped', NULL::text, NULL::text, v.campaign_id, v.is_gold, false, false;
        RETURN;
    END IF;

    IF v.status = 'leased' THEN
        -- What only the campaign and the pair can tell; the label's own shape was checked before the call.
        IF p_choice IN ('a', 'b') AND (p_strength IS NULL OR p_strength NOT BETWEEN 1 AND v.strength_scale) THEN
            v_errors := v_errors || jsonb_build_object('strength', format(
                'A choice of %L needs a strength from 1 to %s, got %s.',
                p_choice, v.strength_scale, coalesce(p_strength::text, 'None')));
        END IF;
        FOR i IN 0 .. jsonb_array_length(p_spans) - 1 LOOP
            v_span := p_spans -> i;
            v_length := CASE WHEN v_span ->> 'response' = 'a' THEN v.length_a ELSE v.length_b END;
            IF NOT ((v_span ->> 'start')::integer >= 0
                    AND (v_span ->> 'start')::integer < (v_span ->> 'end')::integer
                    AND (v_span ->> 'end')::integer <= v_length) THEN
                v_errors := v_errors || jsonb_build_object('spans', format(
                    'Span %s: expected 0 <= start < end <= %s, got start=%s, end=%s.',
                    i, v_length, v_span ->> 'start', v_span ->> 'end'));
                EXIT;
            END IF;
        END LOOP;
        IF v.rationale_required AND btrim(p_rationale, E' \t\n\r\f\v') = '' THEN
            v_errors := v_errors || jsonb_build_object('rationale', 'This campaign asks for a rationale with every label.');
        END IF;
        IF v_errors <> '{}' THEN
            RETURN QUERY SELECT 'invalid', v_errors::text, NULL::text, v.campaign_id, v.is_gold, false, false;
            RETURN;
        END IF;

        -- A label on an expired lease is kept only while the pair still has room for it.
        IF v.expires_at <= p_now THEN
            PERFORM 1 FROM annotate_pair WHERE id = v.pair_id FOR UPDATE;
            IF NOT v.is_gold AND rewardlab_pair_load(v.pair_id, p_now, v.id) >= v.needed_labels THEN
                RETURN QUERY SELECT 'expired',
                    to_char(v.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
                    NULL::text, v.campaign_id, v.is_gold, false, false;
                RETURN;
            END IF;
        END IF;

        INSERT INTO annotate_annotation (
            assignment_id, pair_id, annotator_id, more_hallucinated, strength, hallucination_types, spans,
            rationale, shown_left, duration_ms, created_at
        ) VALUES (
            v.id, v.pair_id, p_user, p_choice, p_strength, p_types, p_spans, p_rationale, v."left", p_duration, p_now
        );
        UPDATE annotate_assignment SET status = 'done', finished_at = p_now WHERE id = v.id;
        -- Count the label, and close a non-gold pair that now has all it needs.
        UPDATE annotate_pair
           SET labels_count = labels_count + 1,
               status = CASE WHEN gold_answer = '' AND labels_count + 1 >= needed_labels THEN 'complete' ELSE status END
         WHERE id = v.pair_id;
        -- The campaign's counter, last: its row lock lasts only until the commit right after.
        UPDATE annotate_campaign c
           SET human_labels = c.human_labels + 1
         WHERE c.id = v.campaign_id
        RETURNING c.human_labels - c.labels_at_last_request >= c.retrain_every INTO v_due;
        -- Due, but a run is already training or its request reached the broker lately: nothing to ask for.
        -- Otherwise `retrain_if_due` decides (it queues a run, or sends one again that never left).
        v_due := v_due AND NOT EXISTS (
            SELECT 1 FROM annotate_modelrun r
             WHERE r.campaign_id = v.campaign_id
               AND (r.status = 'running' OR (r.status = 'queued' AND r.dispatched_at >= p_resend_before))
        );
        v_claimed := rewardlab_consensus_claim(v.campaign_id, p_now, p_consensus_every, p_consensus_lost);
        v_outcome := 'created';
    END IF;

    RETURN QUERY
    SELECT v_outcome, NULL::text, json_build_object(
        'id', n.id, 'assignment', n.assignment_id, 'pair', n.pair_id, 'campaign', v.campaign_id,
        'external_id', i.external_id, 'a', ra.external_id, 'b', rb.external_id, 'annotator', NULL,
        'more_hallucinated', n.more_hallucinated, 'strength', n.strength,
        'hallucination_types', n.hallucination_types, 'spans', n.spans, 'rationale', n.rationale,
        'shown_left', n.shown_left, 'duration_ms', n.duration_ms,
        'created_at', to_char(n.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    )::text, v.campaign_id, v.is_gold, v_due, v_claimed
      FROM annotate_annotation n
      JOIN annotate_pair p ON p.id = n.pair_id
      JOIN annotate_item i ON i.id = p.item_id
      JOIN annotate_response ra ON ra.id = p.a_id
      JOIN annotate_response rb ON rb.id = p.b_id
     WHERE n.assignment_id = v.id;
END
$$;
"""

# What counts against a pair's overlap: its labels and its leases not yet expired, but for one assignment
# (the label being saved on an expired lease). VOLATILE: it counts on a snapshot of its own, taken after the
# caller's row lock, so it sees every lease committed by whoever held that lock before.
PAIR_LOAD = r"""
CREATE OR REPLACE FUNCTION rewardlab_pair_load(p_pair bigint, p_now timestamptz, p_except bigint)
RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    SELECT count(*) FROM annotate_assignment l
     WHERE l.pair_id = p_pair AND l.id IS DISTINCT FROM p_except
       AND (l.status = 'done' OR (l.status = 'leased' AND l.expires_at > p_now));
$$;
"""

# A consensus refresh is claimed by one conditional UPDATE, so concurrent labels send one request
# (annotate.services.quality.consensus_request says why the two intervals).
CONSENSUS_CLAIM = r"""
CREATE OR REPLACE FUNCTION rewardlab_consensus_claim(
    p_campaign bigint, p_now timestamptz, p_every interval, p_lost interval
) RETURNS boolean
LANGUAGE sql VOLATILE AS $$
    WITH claimed AS (
        UPDATE annotate_campaign
           SET consensus_requested_at = p_now
         WHERE id = p_campaign
           AND (consensus_requested_at IS NULL OR consensus_requested_at <= p_now - p_lost)
           AND (consensus_started_at IS NULL OR consensus_started_at <= p_now - p_every)
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM claimed);
$$;
"""

DROP = """
DROP FUNCTION IF EXISTS rewardlab_submit(
    integer, bigint, text, integer, jsonb, jsonb, text, integer, timestamptz, interval, interval, timestamptz
);
DROP FUNCTION IF EXISTS rewardlab_consensus_claim(bigint, timestamptz, interval, interval);
DROP FUNCTION IF EXISTS rewardlab_lease(integer, bigint, text[], double precision, timestamptz, text, integer);
DROP FUNCTION IF EXISTS rewardlab_pair_load(bigint, timestamptz, bigint);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("annotate", "0010_job_queue"),
    ]

    operations = [
        migrations.RunSQL(PAIR_LOAD + CONSENSUS_CLAIM + LEASE + SUBMIT, reverse_sql=DROP),
    ]
