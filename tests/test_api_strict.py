"""Requests say what is wrong (issue 18, item 5; API.md, "REST API"): a key the endpoint does not know is a 400
naming it, and a value outside a choice is a 400 listing the valid ones.

The operations come from the project's own OpenAPI schema, so an endpoint added later is swept without editing
this file: every request body (and nested object in it) gets a key no serializer declares, every filtering query
string a parameter no filter reads, and every enum, in a body or a query string, a value it does not hold. A
path id this file cannot fill fails the sweep until a row is added to `path_ids`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model
from drf_spectacular.generators import SchemaGenerator

from annotate.api.pagination import PAGING_PARAMETERS
from annotate.models import ExportSnapshot, ImportJob, ModelRun
from annotate.services.annotations import LabelInput, annotation_save
from annotate.services.assignments import assignment_next
from tests.factories import make_pairs

UNKNOWN = "zz_not_a_field"
NOT_A_CHOICE = "zz-not-a-choice"
# A value of each JSON type, for the required fields of a body: enough to look valid beside the key refused.
SAMPLE = {"string": "x", "integer": 1, "number": 0.5, "boolean": True, "array": [], "object": {}}


@pytest.fixture(scope="module")
def schema(django_db_blocker) -> dict:
    with django_db_blocker.unblock():
        return SchemaGenerator().get_schema(request=None, public=True)


def _resolve(schema: dict, node: dict) -> dict:
    """Follow a `$ref` (or drf-spectacular's one-item `allOf` around one) to the schema it names."""
    if "allOf" in node and len(node["allOf"]) == 1:
        node = {**node["allOf"][0], **{k: v for k, v in node.items() if k != "allOf"}}
    if "$ref" in node:
        return _resolve(schema, schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]])
    return node


def _sample(schema: dict, node: dict):
    node = _resolve(schema, node)
    if node.get("enum"):
        return next(value for value in node["enum"] if value not in ("", None))
    if node.get("type") == "object":
        return {name: _sample(schema, prop) for name, prop in _body_fields(node, required_only=True).items()}
    return SAMPLE[node.get("type", "string")]


def _body_fields(node: dict, *, required_only: bool = False) -> dict[str, dict]:
    required = set(node.get("required", []))
    return {name: prop for name, prop in node.get("properties", {}).items() if not required_only or name in required}


def _valid_body(schema: dict, node: dict) -> dict:
    """A body holding every required field with a value of its type: the key added beside it is the only flaw."""
    return {name: _sample(schema, prop) for name, prop in _body_fields(node, required_only=True).items()}


def _nested_objects(schema: dict, node: dict) -> Iterator[tuple[str, dict, bool]]:
    """Yield (field, its object's schema, is_list) for each body field that is an object with fields of its own,
    or a list of them."""
    for name, prop in _body_fields(node).items():
        prop = _resolve(schema, prop)
        is_list = prop.get("type") == "array"
        inner = _resolve(schema, prop["items"]) if is_list else prop
        if inner.get("type") == "object" and inner.get("properties"):
            yield name, inner, is_list


def _enums(schema: dict, node: dict) -> Iterator[tuple[str, list[str], bool]]:
    """Yield (field, its valid values, is_list) for each body field that is a choice or a list of choices."""
    for name, prop in _body_fields(node).items():
        prop = _resolve(schema, prop)
        is_list = prop.get("type") == "array"
        inner = _resolve(schema, prop["items"]) if is_list else prop
        if inner.get("enum"):
            yield name, [value for value in inner["enum"] if value not in ("", None)], is_list


def _operations(schema: dict) -> Iterator[tuple[str, str, dict]]:
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            yield path, method, operation


def _body_schema(schema: dict, operation: dict) -> tuple[dict, str]:
    content = operation["requestBody"]["content"]
    media = "application/json" if "application/json" in content else next(iter(content))
    return _resolve(schema, content[media]["schema"]), "json" if media == "application/json" else "multipart"


@pytest.fixture
def world(campaign, make_user) -> dict:
    """A campaign with an object behind every id the API's paths take, and staff, who may call every operation."""
    make_user("staff", staff=True)
    ann1 = get_user_model().objects.get(username="ann1")
    make_pairs(campaign, 3)
    assignment = assignment_next(campaign=campaign, annotator=ann1).assignment
    label = LabelInput(more_hallucinated="a", strength=2)
    annotation = annotation_save(assignment_id=assignment.pk, user_id=ann1.pk, label=label)
    path_ids = {
        "campaign_id": campaign.pk,
        "assignment_id": assignment_next(campaign=campaign, annotator=ann1).assignment.pk,
        "annotation_id": annotation.annotation_id,
        "export_id": ExportSnapshot.objects.create(campaign=campaign, format="reward", status="succeeded").pk,
        "job_id": ImportJob.objects.create(campaign=campaign, filename="a.zip", status="succeeded").pk,
        "run_id": ModelRun.objects.create(campaign=campaign, trigger="labels", status="succeeded").pk,
    }
    return {"path_ids": path_ids}


def _url(path: str, path_ids: dict) -> str:
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    missing = [name for name in names if name not in path_ids]
    assert not missing, f"{path}: add an object for {missing} to the `world` fixture's path_ids"
    return path.format(**{name: path_ids[name] for name in names})


def _client(api_as, path: str):
    # An annotation is changed by its annotator only; staff act as every other role.
    return api_as("ann1" if path.startswith("/api/v1/annotations/{") else "staff")


def _refusal(response) -> dict[str, list[str]]:
    assert response.status_code == 400, (response.status_code, response.content[:500])
    return response.json()["fields"]


def test_every_body_refuses_a_key_it_does_not_know_by_name(schema, world, api_as):
    swept = []
    for path, method, operation in _operations(schema):
        if "requestBody" not in operation:
            continue
        node, media = _body_schema(schema, operation)
        url, client = _url(path, world["path_ids"]), _client(api_as, path)
        body = {**_valid_body(schema, node), UNKNOWN: 1}
        fields = _refusal(getattr(client, method)(url, body, format=media))
        assert fields == {UNKNOWN: [f"Unknown field; expected {', '.join(node['properties'])}."]}, (method, path)
        if media != "json":
            swept.append((method, path))
            continue
        for name, inner_node, is_list in _nested_objects(schema, node):
            inner = {**_valid_body(schema, inner_node), UNKNOWN: 1}
            body = {**_valid_body(schema, node), name: [inner] if is_list else inner}
            fields = _refusal(getattr(client, method)(url, body, format=media))
            assert any(key.startswith(name) and UNKNOWN in key + str(value) for key, value in fields.items()), (
                method,
                path,
                name,
                fields,
            )
        swept.append((method, path))
    assert ("post", "/api/v1/campaigns/{campaign_id}/exports/") in swept and len(swept) >= 8, swept


def test_every_filter_query_refuses_a_parameter_it_does_not_know_by_name(schema, world, api_as):
    swept = []
    for path, method, operation in _operations(schema):
        names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        if not names - PAGING_PARAMETERS:
            continue  # a list that only pages: there is no filter to misspell
        response = _client(api_as, path).get(_url(path, world["path_ids"]), {UNKNOWN: "1", "page": "1"})
        assert UNKNOWN in _refusal(response), (method, path)
        swept.append(path)
    assert "/api/v1/campaigns/{campaign_id}/pairs/" in swept


def _choice_message(values: list[str]) -> str:
    listed = values[0] if len(values) == 1 else f"{', '.join(values[:-1])} or {values[-1]}"
    return f'"{NOT_A_CHOICE}" is not a valid choice; expected {listed}.'


def test_every_choice_refused_lists_the_valid_ones(schema, world, api_as):
    swept = []
    for path, method, operation in _operations(schema):
        url, client = _url(path, world["path_ids"]), _client(api_as, path)
        for parameter in operation.get("parameters", []):
            values = [v for v in parameter.get("schema", {}).get("enum", []) if v not in ("", None)]
            if parameter["in"] == "query" and values:
                fields = _refusal(client.get(url, {parameter["name"]: NOT_A_CHOICE}))
                assert fields[parameter["name"]] == [_choice_message(values)], (path, parameter["name"])
                swept.append(parameter["name"])
        if "requestBody" not in operation:
            continue
        node, media = _body_schema(schema, operation)
        for name, values, is_list in _enums(schema, node):
            body = {**_valid_body(schema, node), name: [NOT_A_CHOICE] if is_list else NOT_A_CHOICE}
            fields = _refusal(getattr(client, method)(url, body, format=media))
            messages = fields[name] if not is_list else [m for m in fields[name] if NOT_A_CHOICE in m]
            assert _choice_message(values) in str(messages), (method, path, name, fields)
            swept.append(name)
    assert {"format", "container", "more_hallucinated", "hallucination_types", "role", "surfaced"} <= set(swept)


def test_a_bad_export_filter_choice_lists_the_valid_ones(campaign, api_as):
    """The issue's example: `labels: "all"` said only that "all" is not a valid choice."""
    url = f"/api/v1/campaigns/{campaign.pk}/exports/"
    response = api_as("lead").post(url, {"format": "reward", "filters": {"labels": "all"}}, format="json")
    assert response.status_code == 400
    assert '"all" is not a valid choice; expected human or with_priors.' in str(response.json()["fields"])
