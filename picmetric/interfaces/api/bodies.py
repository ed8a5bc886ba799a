"""Request bodies of the HTTP API, declared as models that FastAPI parses, checks and publishes in OpenAPI.

Two routes take either a multipart form or JSON on one path (``POST /api/v1/analyses``, ``/api/v1/batches``, and the
seed's ``/do_data_science_url``): each is two declared routes, a ``JsonRoute`` that matches JSON requests only and a
form route for the rest, published as one operation with both bodies (``merged_openapi``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Form, Request, UploadFile
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    create_model,
    model_validator,
)
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from picmetric.core.options import AnalysisOptions
from picmetric.interfaces.api.errors import BadRequest

_CLOSED = ConfigDict(extra="forbid")  # a typo in a field name is refused, never ignored
#: a form model with files: published as multipart/form-data (FastAPI would say urlencoded for a model)
Multipart = Form(media_type="multipart/form-data")


def _options(value: object) -> object:
    """Options as sent (a JSON object), checked by the options model's own parser and messages."""
    return value if isinstance(value, AnalysisOptions) else AnalysisOptions.from_input(value)


def _url_list(value: object) -> object:
    """A list of image URLs: JSON's own list, or a form field holding one as JSON text."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError("'urls' must be a list of image URLs (a form sends it as a JSON list)") from None
    if not isinstance(value, list) or not all(isinstance(url, str) and url.strip() for url in value):
        raise ValueError("'urls' must be a list of image URLs")
    return value


Options = Annotated[AnalysisOptions, BeforeValidator(_options)]


def _address(value: str) -> str:
    if not value.strip():
        raise ValueError("send the image address as the field 'url'")
    return value


Url = Annotated[str, AfterValidator(_address), Field(json_schema_extra={"format": "uri", "minLength": 1})]
UrlList = Annotated[
    list[str],
    BeforeValidator(_url_list),
    WithJsonSchema({"type": "array", "items": {"type": "string", "format": "uri"}}),
]


class UrlAnalysisRequest(BaseModel):
    """Analyse the image at ``url``."""

    model_config = _CLOSED
    url: Url
    options: Options = AnalysisOptions()


class UrlBatchRequest(BaseModel):
    """Queue the images at ``urls``."""

    model_config = _CLOSED
    urls: UrlList
    options: Options = AnalysisOptions()


class SeedUrl(BaseModel):
    """The seed's URL body, as a form or JSON."""

    model_config = _CLOSED
    url: Url


def _option_form_fields() -> dict[str, Any]:
    """Every analysis option as a form field: sent as text, published with the option's own type and range, and
    parsed by the options model (so a form and JSON are refused with the same words)."""
    published = AnalysisOptions.model_json_schema()["properties"]
    published["tasks"] = {"type": "string", "description": "comma-separated: labels, objects, faces"}
    return {
        name: (
            Annotated[str | None, WithJsonSchema({k: v for k, v in published[name].items() if k != "default"})],
            None,
        )
        for name in AnalysisOptions.model_fields
    }


class OptionForm(BaseModel):
    """Form fields of the analysis options; an empty field means the option's default."""

    model_config = _CLOSED

    @model_validator(mode="before")
    @classmethod
    def _known_names(cls, fields: object) -> object:
        """An unknown name is refused in the options' own words (a form's fields are the options, and files)."""
        if isinstance(fields, Mapping):
            AnalysisOptions.from_input({k: None for k in fields}, other_fields=cls.model_fields)
        return fields

    def options(self) -> AnalysisOptions:
        return AnalysisOptions.from_input(self.model_dump(include=set(AnalysisOptions.model_fields), exclude_none=True))


def _with_options(name: str, doc: str, **fields: Any) -> type[OptionForm]:
    model = create_model(name, __base__=OptionForm, __doc__=doc, **fields, **_option_form_fields())
    return model


if TYPE_CHECKING:  # what the models below are, to a type checker

    class AnalysisUpload(OptionForm):
        file: UploadFile

    class BatchUpload(OptionForm):
        files: list[UploadFile]
        urls: list[str] | None

else:
    AnalysisUpload = _with_options(
        "AnalysisUpload", "A photo and the options to analyse it with.", file=(UploadFile, ...)
    )
    BatchUpload = _with_options(
        "BatchUpload",
        "Photos (the field 'files', repeated) and/or image URLs ('urls', a JSON list), and the options for all.",
        files=(list[UploadFile], []),
        urls=(UrlList | None, None),
    )


#: form fields that may repeat: a batch's photos
_REPEATABLE_FIELDS = frozenset({"files"})


async def _each_field_once(request: Request) -> None:
    """A form that sends a field twice (``top_k=3&top_k=5``) is refused, as a JSON body with a key twice is:
    quietly keeping the last would analyse with options the caller may not have meant."""
    if is_json(request.scope):
        return
    sent = Counter(name for name, _ in (await request.form()).multi_items())  # parsed once: the route reuses it
    repeated = sorted(name for name, count in sent.items() if count > 1 and name not in _REPEATABLE_FIELDS)
    if repeated:
        shown = ", ".join(repr(name[:40]) for name in repeated[:5])
        raise BadRequest(f"send each form field once: {shown} sent more than once")


#: a form route's dependency: each field (bar a batch's files) sent once
EachFieldOnce = Depends(_each_field_once)


class JsonRoute(APIRoute):
    """A route that matches requests with a JSON body only, so the same path can also have a form route."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is Match.FULL and not is_json(scope):
            return Match.NONE, {}
        return match, child


def is_json(scope: Scope) -> bool:
    content_type = dict(scope.get("headers", ())).get(b"content-type", b"")
    return content_type.split(b";")[0].strip().lower() == b"application/json"


def merged_openapi(app: FastAPI, security: Callable[[str, str], list[dict[str, list[str]]]],
                   schemes: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """The OpenAPI schema with each JSON route's body added to its form twin's operation (FastAPI would publish
    only one of two operations on the same path and method), and each operation's security requirement."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    json_routes = [r for r in app.routes if isinstance(r, JsonRoute)]
    others = [r for r in app.routes if not isinstance(r, JsonRoute)]
    schema, json_schema = _openapi(app, others), _openapi(app, json_routes)
    for path, operations in json_schema["paths"].items():
        for method, operation in operations.items():
            twin = schema["paths"].setdefault(path, {}).setdefault(method, operation)
            if twin is not operation:
                twin["requestBody"]["content"].update(operation["requestBody"]["content"])
    json_components = json_schema.get("components", {}).get("schemas", {})
    schema.setdefault("components", {}).setdefault("schemas", {}).update(json_components)
    schema["components"]["securitySchemes"] = schemes
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            operation["security"] = security(method.upper(), path)
    app.openapi_schema = schema
    return schema


def _openapi(app: FastAPI, routes: Sequence[BaseRoute]) -> dict[str, Any]:
    return get_openapi(title=app.title, version=app.version, description=app.description, routes=routes)
