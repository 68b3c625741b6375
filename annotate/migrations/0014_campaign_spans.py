"""The campaign's spans setting (off / optional / required), and the one place that judges a label's spans.

`rewardlab_spans_errors` checks a label's spans against the pair's answers and the campaign's setting; the
submit function (0011) calls it in place of its own offsets loop, so the rule is in one place that any other
path writing a label (an edit, say) calls too. `off` refuses spans rather than dropping them: a client that
sends spans to a campaign that does not collect them is told so, and nothing it sent is silently lost.
"""

import importlib

from django.db import migrations, models

labeling = importlib.import_module("annotate.migrations.0011_labeling_functions")

SPANS_ERRORS = r"""
CREATE OR REPLACE FUNCTION rewardlab_spans_errors(
    p_mode text, p_choice text, p_spans jsonb, p_length_a integer, p_length_b integer
) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_span jsonb;
    v_length integer;
BEGIN
    IF p_mode = 'off' AND jsonb_array_length(p_spans) > 0 THEN
        RETURN format('This campaign does not collect spans (spans: off); got %s.', jsonb_array_length(p_spans));
    END IF;
    FOR i IN 0 .. jsonb_array_length(p_spans) - 1 LOOP
        v_span := p_spans -> i;
        v_length := CASE WHEN v_span ->> 'response' = 'a' THEN p_length_a ELSE p_length_b END;
        IF NOT ((v_span ->> 'start')::integer >= 0
                AND (v_span ->> 'start')::integer < (v_span ->> 'end')::integer
                AND (v_span ->> 'end')::integer <= v_length) THEN
            RETURN format('Span %s: expected 0 <= start < end <= %s, got start=%s, end=%s.',
                          i, v_length, v_span ->> 'start', v_span ->> 'end');
        END IF;
    END LOOP;
    IF p_mode = 'required' AND p_choice IN ('a', 'b') AND NOT EXISTS (
        SELECT 1 FROM jsonb_array_elements(p_spans) s WHERE s ->> 'response' = p_choice
    ) THEN
        RETURN format('This campaign asks for at least one span in the more hallucinated answer (%s); '
                      'none was marked there.', p_choice);
    END IF;
    RETURN NULL;
END
$$;
"""

# The submit function of 0011, reading the campaign's setting and calling the function above.
OLD_SELECT = "p.needed_labels, c.strength_scale, c.rationale_required,"
NEW_SELECT = "p.needed_labels, c.strength_scale, c.rationale_required, c.spans AS spans_mode,"
OLD_LOOP = """        FOR i IN 0 .. jsonb_array_length(p_spans) - 1 LOOP
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
"""
NEW_LOOP = """        v_spans_error := rewardlab_spans_errors(v.spans_mode, p_choice, p_spans, v.length_a, v.length_b);
        IF v_spans_error IS NOT NULL THEN
            v_errors := v_errors || jsonb_build_object('spans', v_spans_error);
        END IF;
"""
OLD_DECLARE = "    v_span jsonb;\n    v_length integer;\n"
NEW_DECLARE = "    v_spans_error text;\n"


def _submit_with_spans_rule() -> str:
    sql = labeling.SUBMIT
    for old, new in ((OLD_SELECT, NEW_SELECT), (OLD_LOOP, NEW_LOOP), (OLD_DECLARE, NEW_DECLARE)):
        assert sql.count(old) == 1, f"0011's rewardlab_submit changed: {old!r} not found once"
        sql = sql.replace(old, new)
    return sql


DROP = "DROP FUNCTION IF EXISTS rewardlab_spans_errors(text, text, jsonb, integer, integer);"


class Migration(migrations.Migration):
    dependencies = [
        ("annotate", "0013_exportjob_container"),
    ]

    operations = [
        migrations.AddField(
            model_name="campaign",
            name="spans",
            field=models.CharField(
                choices=[
                    ("off", "Off: no spans"),
                    ("optional", "Optional"),
                    ("required", "Required on the more hallucinated answer"),
                ],
                default="optional",
                max_length=10,
            ),
        ),
        # The old submit is restored before the function it would no longer call is dropped.
        migrations.RunSQL(SPANS_ERRORS + _submit_with_spans_rule(), reverse_sql=labeling.SUBMIT + DROP),
    ]
