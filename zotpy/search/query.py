"""A GraphQL request against zot's schema: parsed, checked, limited, then answered in two steps.

graphql-core runs resolvers that return awaitables through asyncio, which a Twisted reactor does
not run. So the work is split: :func:`prepare` parses and validates the document and lists its
top-level fields with their arguments (:class:`Planned`); the caller resolves each of them on the
reactor (locally, or by asking cluster members) and :func:`answer` executes the document
synchronously over those results, selecting the fields the client asked for. Every nested field
reads the dicts the resolvers built; nothing below the top level does I/O.

Limits (a query costs this registry, and in a cluster every member, work): the document's size
and tokens, its selection depth (:data:`MAX_DEPTH`), its fields counted through fragments and
aliases (:data:`MAX_FIELDS`), and its top-level fields (:data:`MAX_ROOT_FIELDS`: each may be a
cluster-wide fan-out). Refusals, parse and validation errors are answered as gqlgen (zot's
GraphQL server) answers them: 422 with ``{"errors": [...]}``.
"""

from __future__ import annotations

import os
from typing import Any

import attrs
from graphql import (
    ExecutionResult,
    GraphQLError,
    GraphQLIncludeDirective,
    GraphQLSchema,
    GraphQLSkipDirective,
    OperationType,
    build_schema,
    execute_sync,
    get_operation_ast,
    parse,
    validate,
)
from graphql.execution.values import get_argument_values, get_directive_values, get_variable_values
from graphql.language import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    SelectionSetNode,
)

SCHEMA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema.graphql")

MAX_QUERY_CHARS = 64 * 1024
MAX_TOKENS = 5_000
MAX_DEPTH = 12
MAX_FIELDS = 1_000
MAX_ROOT_FIELDS = 10


class QueryRefused(Exception):
    """The request is not a query this server runs: ``errors`` for the reply, with ``status``."""

    def __init__(self, errors: list[GraphQLError] | str, status: int = 422) -> None:
        self.errors = [GraphQLError(errors)] if isinstance(errors, str) else errors
        self.status = status
        super().__init__("; ".join(error.message for error in self.errors))

    def body(self) -> dict[str, Any]:
        return {"errors": [error.formatted for error in self.errors], "data": None}


def _root_field(root: dict[str, Any], info: Any, **_: Any) -> Any:
    value = root[info.path.key]
    if isinstance(value, Exception):
        raise value
    return value


def load_schema() -> GraphQLSchema:
    with open(SCHEMA_FILE, encoding="utf-8") as stream:
        schema = build_schema(stream.read())
    assert schema.query_type is not None
    for field in schema.query_type.fields.values():
        field.resolve = _root_field
    return schema


SCHEMA = load_schema()


@attrs.frozen
class Planned:
    """A top-level field to resolve: ``key`` is its alias (or name) in the reply."""

    key: str
    field: str
    args: dict[str, Any]


@attrs.frozen
class Prepared:
    document: DocumentNode
    operation_name: str | None
    variables: dict[str, Any]
    fields: tuple[Planned, ...]


def _too_deep_text(query: str) -> bool:
    """Nesting deeper than allowed, judged on the text before the (recursive) parser sees it."""
    depth = deepest = 0
    quoted = False
    previous = ""
    for char in query:
        if char == '"' and previous != "\\":
            quoted = not quoted
        elif not quoted and char == "{":
            depth += 1
            deepest = max(deepest, depth)
        elif not quoted and char == "}":
            depth -= 1
        previous = char
    return deepest > MAX_DEPTH + 1  # the operation's own braces


class _Cost:
    """Depth and field count of a document, through fragments (each fragment counted where spread)."""

    def __init__(self, fragments: dict[str, FragmentDefinitionNode]) -> None:
        self.fragments = fragments
        self.fields = 0

    def visit(self, selections: SelectionSetNode | None, depth: int, path: tuple[str, ...]) -> None:
        if selections is None:
            return
        if depth > MAX_DEPTH:
            raise QueryRefused(f"the query is nested deeper than {MAX_DEPTH} levels")
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                self.fields += 1
                if self.fields > MAX_FIELDS:
                    raise QueryRefused(f"the query selects more than {MAX_FIELDS} fields")
                self.visit(selection.selection_set, depth + 1, path)
            elif isinstance(selection, InlineFragmentNode):
                self.visit(selection.selection_set, depth, path)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is not None and name not in path:  # cycles: refused by validation
                    self.visit(fragment.selection_set, depth, path + (name,))


def prepare(query: Any, variables: Any = None, operation_name: Any = None) -> Prepared:
    """Raise :class:`QueryRefused` unless ``query`` is a query this server runs."""
    if not isinstance(query, str) or not query.strip():
        raise QueryRefused("no operation provided")
    if variables is not None and not isinstance(variables, dict):
        raise QueryRefused("variables must be a JSON object", 400)
    if operation_name is not None and not isinstance(operation_name, str):
        raise QueryRefused("operationName must be a string", 400)
    if len(query) > MAX_QUERY_CHARS:
        raise QueryRefused(f"the query is longer than {MAX_QUERY_CHARS} characters")
    if _too_deep_text(query):
        raise QueryRefused(f"the query is nested deeper than {MAX_DEPTH} levels")
    try:
        document = parse(query, max_tokens=MAX_TOKENS)
    except GraphQLError as error:
        raise QueryRefused([error]) from None
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    cost = _Cost(fragments)
    for definition in document.definitions:
        if not isinstance(definition, FragmentDefinitionNode):
            cost.visit(getattr(definition, "selection_set", None), 1, ())
    errors = validate(SCHEMA, document, max_errors=20)
    if errors:
        raise QueryRefused(list(errors))
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        raise QueryRefused("no operation, or operationName names none of the document's operations")
    if operation.operation != OperationType.QUERY:
        raise QueryRefused(f"{operation.operation.value} operations are not supported")
    coerced = get_variable_values(SCHEMA, operation.variable_definitions or (), variables or {}, max_errors=20)
    if isinstance(coerced, list):
        raise QueryRefused(coerced)
    assert SCHEMA.query_type is not None
    planned = []
    for key, nodes in _root_fields(operation.selection_set, fragments, coerced).items():
        name = nodes[0].name.value
        if name.startswith("__"):
            continue  # __typename, introspection: the executor answers those
        field = SCHEMA.query_type.fields[name]
        planned.append(Planned(key, name, get_argument_values(field, nodes[0], coerced)))
    if len(planned) > MAX_ROOT_FIELDS:
        raise QueryRefused(f"the query asks for more than {MAX_ROOT_FIELDS} top-level fields")
    return Prepared(document, operation_name, coerced, tuple(planned))


def _included(node: FieldNode | FragmentSpreadNode | InlineFragmentNode, variables: dict[str, Any]) -> bool:
    skip = get_directive_values(GraphQLSkipDirective, node, variables)
    if skip and skip.get("if") is True:
        return False
    include = get_directive_values(GraphQLIncludeDirective, node, variables)
    return not (include and include.get("if") is False)


def _root_fields(
    selection_set: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode], variables: dict[str, Any],
    grouped: dict[str, list[FieldNode]] | None = None, seen: set[str] | None = None,
) -> dict[str, list[FieldNode]]:
    """The operation's top-level fields by response key, as the executor will run them (fragments
    spread, ``@skip``/``@include`` applied). Our own walk rather than graphql-core's
    ``collect_fields``, whose signature and result changed between 3.2 and 3.3 (it is not public
    API); validation has already held every fragment here to the Query type."""
    grouped = {} if grouped is None else grouped
    seen = set() if seen is None else seen
    for selection in selection_set.selections:
        if not _included(selection, variables):
            continue
        if isinstance(selection, FieldNode):
            key = selection.alias.value if selection.alias else selection.name.value
            grouped.setdefault(key, []).append(selection)
        elif isinstance(selection, InlineFragmentNode):
            _root_fields(selection.selection_set, fragments, variables, grouped, seen)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
            seen.add(selection.name.value)
            _root_fields(fragments[selection.name.value].selection_set, fragments, variables, grouped, seen)
    return grouped


def answer(prepared: Prepared, results: dict[str, Any]) -> dict[str, Any]:
    """The reply body for ``prepared`` with each top-level field's result (or the exception that
    stands for its error) in ``results`` by key."""
    outcome: ExecutionResult = execute_sync(
        SCHEMA, prepared.document, root_value=results, operation_name=prepared.operation_name,
        variable_values=prepared.variables,
    )
    return outcome.formatted
