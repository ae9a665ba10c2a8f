"""The Metadata servicer is one object composed of handler objects, not a ladder of mixins."""

from __future__ import annotations

import pytest

from metanode.rpcbase import Handlers
from metanode.servicer import HANDLERS, SERVICE, MetadataService, bind_rpcs


def _bare(handler: type[Handlers]) -> Handlers:
    return handler.__new__(handler)  # bind_rpcs only looks at the methods


def test_every_rpc_is_served_by_exactly_one_handler() -> None:
    bound = bind_rpcs(SERVICE, [_bare(h) for h in HANDLERS])
    assert sorted(bound) == sorted(m.name for m in SERVICE.methods)
    for name, method in bound.items():
        owner = type(method.__self__)
        assert owner in HANDLERS and name in vars(owner)


def test_handlers_are_siblings_not_a_ladder() -> None:
    for handler in HANDLERS:
        assert handler.__bases__ == (Handlers,), handler
    assert MetadataService.__bases__[0].__module__.startswith("tessera.pb")
    assert not any(issubclass(MetadataService, h) for h in HANDLERS)


def test_an_rpc_served_twice_or_not_at_all_is_refused() -> None:
    with pytest.raises(TypeError, match="served by two handlers"):
        bind_rpcs(SERVICE, [_bare(h) for h in (*HANDLERS, HANDLERS[0])])
    with pytest.raises(TypeError, match="no handler serves Metadata: .*Login"):
        bind_rpcs(SERVICE, [_bare(h) for h in HANDLERS if h.__name__ != "AccountRpcs"])
