"""Checks OpenAPI documents, and real answers against them.

    check.py DOCUMENT.json [--answers ANSWERS.json]

Validates DOCUMENT with openapi-spec-validator (the OpenAPI version it declares: 3.0 or
3.1). With --answers, also checks answers a server really gave: a JSON list of
{"method", "path", "status", "content_type", "body"} where `path` is the documented path
template (e.g. "/v1/tasks/{id}"). Each answer's operation must be documented, with a
response for its status (or a `default` one) and its media type, and its body must
validate against that response's schema (JSON Schema 2020-12, the dialect of OpenAPI
3.1; `$ref`s resolve inside DOCUMENT). For this check every object schema that names its
properties is closed (`additionalProperties: false` where the document leaves it open),
so a field a handler sends but its schema does not name is found as well as a missing
or mistyped one.

Prints one line per problem and exits 1 when there is any; run by
crates/backdrop-server/tests/openapi.rs.
"""

import argparse
import json
import sys

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

DOCUMENT_URI = "urn:backdrop:document"


def absolute_refs(schema):
    """The schema with every local `$ref` made to point into the document resource."""
    if isinstance(schema, dict):
        return {
            key: (DOCUMENT_URI + value if key == "$ref" and value.startswith("#") else absolute_refs(value))
            for key, value in schema.items()
        }
    if isinstance(schema, list):
        return [absolute_refs(item) for item in schema]
    return schema


def closed(schema):
    """The schema with every object schema that names its properties closed to others."""
    if isinstance(schema, dict):
        out = {key: closed(value) for key, value in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    return schema


def media_type(content, content_type):
    """The documented media type an answer's Content-Type falls under."""
    base = content_type.split(";")[0].strip().lower()
    for name, media in content.items():
        if name.split(";")[0].strip().lower() == base:
            return media
    return None


def check_answer(document, registry, answer):
    """Problems with one answer, as sentences."""
    where = f"{answer['method'].upper()} {answer['path']} {answer['status']}"
    operation = document.get("paths", {}).get(answer["path"], {}).get(answer["method"].lower())
    if operation is None:
        return [f"{where}: the operation is not documented"]
    responses = operation.get("responses", {})
    response = responses.get(str(answer["status"])) or responses.get("default")
    if response is None:
        return [f"{where}: status {answer['status']} is not documented (documented: {', '.join(responses)})"]
    content = response.get("content", {})
    media = media_type(content, answer["content_type"])
    if media is None:
        return [f"{where}: media type {answer['content_type']!r} is not documented (documented: {', '.join(content)})"]
    schema = media.get("schema")
    if schema is None or "body" not in answer:
        return []
    validator = Draft202012Validator(absolute_refs(closed(schema)), registry=registry)
    return [
        f"{where}: {'/'.join(str(p) for p in error.absolute_path) or 'body'}: {error.message}"
        for error in validator.iter_errors(answer["body"])
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("document")
    parser.add_argument("--answers")
    args = parser.parse_args()
    with open(args.document, encoding="utf-8") as f:
        document = json.load(f)
    problems = []
    try:
        validate(document)
    except Exception as error:  # the validator's errors have no common base class
        problems.append(f"{args.document}: not a valid OpenAPI document: {error}")
    if args.answers:
        with open(args.answers, encoding="utf-8") as f:
            answers = json.load(f)
        resource = Resource(contents=closed(document), specification=DRAFT202012)
        registry = Registry().with_resource(DOCUMENT_URI, resource)
        for answer in answers:
            problems.extend(check_answer(document, registry, answer))
    for problem in problems:
        print(problem)
    if problems:
        sys.exit(1)
    print(f"{args.document}: valid OpenAPI {document.get('openapi')}" + (f", {len(answers)} answers conform" if args.answers else ""))


if __name__ == "__main__":
    main()
